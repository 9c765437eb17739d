# The NixOS configuration of each machine of the cluster example (needs
# nixpkgs): three Garage nodes, one per zone, and the MVP's three service
# machines (../mvp/machines.nix).  deployment.nix adds what comes from other
# resources.  The secret files under /run/keys are nixos_config keys.
let
  mvp = import ../mvp/machines.nix;
  # One entry per Garage node: its zone and the address the other nodes reach
  # it at.  deployment.nix gives garage_cluster the same zones, from here.
  nodes = import ./nodes.nix;

  garageNode = name: node: {
    imports = [ (builtins.removeAttrs mvp.garage [ "fediversity" "networking" ]) ];
    networking.hostName = name;
    fediversity.garageNode = {
      enable = true;
      # The cluster's one rpc_secret, uploaded to every node as the same key.
      rpcSecretFile = "/run/keys/garage-rpc-secret";
      adminTokenFile = "/run/keys/garage-admin-token";
      metricsTokenFile = "/run/keys/garage-metrics-token";
      # Each object on three nodes, in three zones; garage_cluster is told the same.
      replicationFactor = 3;
      consistencyMode = "consistent";
      inherit (node) zone;
      rpcPublicAddr = "${node.host}:3901";
      # No layout.capacity: garage_cluster lays out the cluster.
      webPort = 80;
      openFirewall = true;
    };
  };
in
builtins.mapAttrs garageNode nodes
// {
  inherit (mvp) mastodon peertube pixelfed;
}

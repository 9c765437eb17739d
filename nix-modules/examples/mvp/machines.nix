# The NixOS configuration of each MVP machine (needs nixpkgs).  The S3 settings
# of the service machines are added by deployment.nix from the buckets' outputs.
#
# Replace the `hardware` module with each VM's own hardware configuration
# (nixos-generate-config --show-hardware-config on the VM).
let
  hardware =
    { modulesPath, ... }:
    {
      imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];
      boot.loader.grub.device = "/dev/vda";
      fileSystems."/" = {
        device = "/dev/vda1";
        fsType = "ext4";
      };
    };

  common =
    { ... }:
    {
      imports = [ hardware ];
      system.stateVersion = "24.11";
      services.openssh.enable = true;
      # The deployer's key (deployment.nix's deployerSshKey, public half).
      users.users.root.openssh.authorizedKeys.keys = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUF"
      ];
      networking.firewall.allowedTCPPorts = [
        80
        443
      ];
      security.acme = {
        acceptTerms = true;
        defaults.email = "admin@example.org";
      };
    };
in
{
  garage = {
    imports = [ common ];
    networking.hostName = "garage";
    fediversity.garageNode = {
      enable = true;
      rpcSecretFile = "/var/lib/secrets/garage-rpc-secret";
      adminTokenFile = "/var/lib/secrets/garage-admin-token";
      replicationFactor = 1;
      openFirewall = true;
      openAdminFirewall = true;
    };
  };

  mastodon = {
    imports = [ common ];
    networking.hostName = "mastodon";
    services.mastodon = {
      enable = true;
      localDomain = "mastodon.example.org";
      configureNginx = true;
      smtp.fromAddress = "mastodon@example.org";
      streamingProcesses = 1;
    };
  };

  peertube = {
    imports = [ common ];
    networking.hostName = "peertube";
    services.peertube = {
      enable = true;
      localDomain = "peertube.example.org";
      configureNginx = true;
      database.createLocally = true;
      redis.createLocally = true;
      secrets.secretsFile = "/var/lib/secrets/peertube-secret";
    };
  };

  pixelfed = {
    imports = [ common ];
    networking.hostName = "pixelfed";
    services.pixelfed = {
      enable = true;
      domain = "pixelfed.example.org";
      secretFile = "/var/lib/secrets/pixelfed-env";
    };
  };
}

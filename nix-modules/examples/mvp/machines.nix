# The NixOS configuration of each MVP machine (needs nixpkgs).  deployment.nix
# adds what comes from other resources: the Garage node's web root domain, and
# the service machines' S3 settings from their bucket's outputs.  The secret
# files under /run/keys are nixos_config keys (deployment.nix).
#
# Replace the `hardware` module with each VM's own hardware configuration
# (nixos-generate-config --show-hardware-config on the VM).
let
  hardware = {
    boot.initrd.availableKernelModules = [
      "virtio_pci"
      "virtio_blk"
    ];
    boot.loader.grub.device = "/dev/vda";
    fileSystems."/" = {
      device = "/dev/vda1";
      fsType = "ext4";
    };
  };

  common = {
    imports = [ hardware ];
    system.stateVersion = "25.05";
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
      rpcSecretFile = "/run/keys/garage-rpc-secret";
      adminTokenFile = "/run/keys/garage-admin-token";
      metricsTokenFile = "/run/keys/garage-metrics-token";
      replicationFactor = 1;
      # A fresh node gets its layout at once: the buckets follow in the same apply.
      layout.capacity = "100G";
      # The web endpoint on port 80, for http://<bucket alias>.web.example.org.
      webPort = 80;
      openFirewall = true;
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
      secrets.secretsFile = "/run/keys/peertube-secrets";
    };
    # Uploaded before the activation that creates the peertube user (keys.nix).
    fediversity.keyOwners."/run/keys/peertube-secrets" = {
      user = "peertube";
      group = "peertube";
    };
  };

  pixelfed = {
    imports = [ common ];
    networking.hostName = "pixelfed";
    services.pixelfed = {
      enable = true;
      domain = "pixelfed.example.org";
      secretFile = "/run/keys/pixelfed-env";
    };
    fediversity.keyOwners."/run/keys/pixelfed-env" = {
      user = "pixelfed";
      group = "pixelfed";
    };
  };
}

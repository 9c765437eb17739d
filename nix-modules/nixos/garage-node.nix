# A dedicated Garage node: a machine that stores the Fediverse services' media
# and runs nothing else of theirs.
#
#   fediversity.garageNode = {
#     enable = true;
#     rpcSecretFile = "/var/lib/secrets/garage-rpc-secret";   # 64 hex digits
#     adminTokenFile = "/var/lib/secrets/garage-admin-token";
#     replicationFactor = 1;                                  # or 3, with 3 nodes
#   };
#
# The secrets are read from files on the machine when Garage starts (systemd
# credentials): they never enter the Nix store.  Bucket, keys and permissions
# are not configured here; that is the garage_bucket resource's job, through
# the admin API this node serves.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    types
    ;
  cfg = config.fediversity.garageNode;
  credentials = "/run/credentials/garage.service";

  secretPath =
    what:
    mkOption {
      type = types.strMatching "/.*";
      example = "/var/lib/secrets/garage-${what}";
      description = ''
        Absolute path, on the Garage node, of a file holding the ${what}.
        It is a string, not a Nix path, so that the secret is never copied
        into the Nix store; systemd hands it to Garage as a credential.
      '';
    };
in
{
  options.fediversity.garageNode = {
    enable = mkEnableOption "a dedicated Garage node for the Fediverse services' media";

    package = mkPackageOption pkgs "garage" {
      extraDescription = "Garage 1.x (admin API v1) and 2.x (admin API v2) both work with garage_bucket.";
    };

    rpcSecretFile = secretPath "rpc-secret";
    adminTokenFile = secretPath "admin-token";

    replicationFactor = mkOption {
      type = types.enum [
        1
        3
      ];
      default = 1;
      description = ''
        How many nodes hold a copy of each object: 1 for a single node, 3 for
        a cluster of (at least) three nodes, each with this module.  Garage
        cannot change it once data is stored.
      '';
    };

    rpcPublicAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "192.0.2.10:3901";
      description = "The address other nodes reach this one's RPC port at (needed with 3 nodes).";
    };

    bootstrapPeers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d@192.0.2.11:3901" ];
      description = "Other nodes, as `<node id>@<address>:<rpc port>` (`garage node id` prints a node's).";
    };

    region = mkOption {
      type = types.str;
      default = "garage";
      description = "The S3 region name clients must use (garage_bucket's `region` input).";
    };

    s3Port = mkOption {
      type = types.port;
      default = 3900;
      description = "Port of the S3 API.";
    };
    rpcPort = mkOption {
      type = types.port;
      default = 3901;
      description = "Port of the RPC between Garage nodes.";
    };
    adminPort = mkOption {
      type = types.port;
      default = 3903;
      description = "Port of the admin API (garage_bucket's `adminEndpoint`).";
    };

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/garage/data";
      description = "Where object data is stored (large, can be on slow disks).";
    };
    metadataDir = mkOption {
      type = types.str;
      default = "/var/lib/garage/meta";
      description = "Where metadata is stored (small, better on an SSD).";
    };
    dbEngine = mkOption {
      type = types.enum [
        "lmdb"
        "sqlite"
      ];
      default = "lmdb";
      description = "Garage's metadata database engine.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the S3 port, and the RPC port when replicationFactor is 3.";
    };
    openAdminFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the admin API port (the deployer running garage_bucket must reach it).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.replicationFactor == 1 || cfg.rpcPublicAddr != null;
        message = "fediversity.garageNode: replicationFactor = 3 needs rpcPublicAddr, so that the other nodes can reach this one.";
      }
      {
        assertion = !lib.hasPrefix builtins.storeDir cfg.rpcSecretFile && !lib.hasPrefix builtins.storeDir cfg.adminTokenFile;
        message = "fediversity.garageNode: the secret files must not be in the Nix store, which every user can read.";
      }
      {
        assertion = !(config.services.mastodon.enable || config.services.peertube.enable || config.services.pixelfed.enable);
        message = "fediversity.garageNode: a Garage node is dedicated to storage; run Mastodon, PeerTube and Pixelfed on other machines (see fediversity.s3Client).";
      }
    ];
    warnings = lib.optional (cfg.replicationFactor == 3 && cfg.bootstrapPeers == [ ]) ''
      fediversity.garageNode: replicationFactor = 3 without bootstrapPeers: connect the nodes by hand with `garage node connect`.
    '';

    services.garage = {
      enable = true;
      inherit (cfg) package;
      settings = {
        replication_factor = cfg.replicationFactor;
        db_engine = cfg.dbEngine;
        data_dir = cfg.dataDir;
        metadata_dir = cfg.metadataDir;
        rpc_bind_addr = "[::]:${toString cfg.rpcPort}";
        rpc_secret_file = "${credentials}/rpc_secret";
        bootstrap_peers = cfg.bootstrapPeers;
        s3_api = {
          api_bind_addr = "[::]:${toString cfg.s3Port}";
          s3_region = cfg.region;
        };
        admin = {
          api_bind_addr = "[::]:${toString cfg.adminPort}";
          admin_token_file = "${credentials}/admin_token";
        };
      } // lib.optionalAttrs (cfg.rpcPublicAddr != null) { rpc_public_addr = cfg.rpcPublicAddr; };
    };

    # A fixed user rather than a dynamic one, so that data and metadata may
    # live anywhere (another disk) with the right owner.
    users.users.garage = {
      isSystemUser = true;
      group = "garage";
      description = "Garage object store";
    };
    users.groups.garage = { };
    systemd.tmpfiles.rules = [
      "d ${cfg.dataDir} 0700 garage garage - -"
      "d ${cfg.metadataDir} 0700 garage garage - -"
    ];
    systemd.services.garage.serviceConfig = {
      DynamicUser = lib.mkForce false;
      User = "garage";
      Group = "garage";
      ReadWritePaths = [
        cfg.dataDir
        cfg.metadataDir
      ];
      # Readable by the service alone (mode 0400), as Garage requires of secret files.
      LoadCredential = [
        "rpc_secret:${cfg.rpcSecretFile}"
        "admin_token:${cfg.adminTokenFile}"
      ];
    };

    networking.firewall.allowedTCPPorts =
      lib.optionals cfg.openFirewall ([ cfg.s3Port ] ++ lib.optional (cfg.replicationFactor == 3) cfg.rpcPort)
      ++ lib.optional cfg.openAdminFirewall cfg.adminPort;
  };
}

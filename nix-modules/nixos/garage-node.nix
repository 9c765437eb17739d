# A dedicated Garage node: a machine that stores the Fediverse services' media
# and runs nothing else of theirs.
#
#   fediversity.garageNode = {
#     enable = true;
#     rpcSecretFile = "/run/keys/garage-rpc-secret";       # 64 hex digits
#     adminTokenFile = "/run/keys/garage-admin-token";
#     metricsTokenFile = "/run/keys/garage-metrics-token";
#     webRootDomain = ".web.example.org";                   # buckets at <alias>.web.example.org
#   };
#
# The secret files are read by Garage itself, from files on the machine (for
# example nixos_config `keys` with user "garage"): they never enter the Nix
# store.  Garage does not start until they exist (fediversity.waitForKeys).
# Buckets, keys and permissions are garage_bucket's job, through the admin API,
# which listens on the node's localhost only: garage_bucket reaches it through
# an SSH tunnel (its `ssh` input).
#
# One node of a cluster: the same rpcSecretFile content (one secret, uploaded
# to every node as a key), replicationFactor and consistencyMode on every
# node, each with its rpcPublicAddr and zone; garage_cluster connects the
# nodes and applies their layout (nix-modules/examples/cluster).
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

  secretPath =
    what:
    mkOption {
      type = types.strMatching "/.*";
      example = "/run/keys/garage-${what}";
      description = ''
        Absolute path, on the Garage node, of a file holding the ${what}.
        It is a string, not a Nix path, so that the secret is never copied
        into the Nix store.  Garage reads it itself and refuses it unless it
        is owned by the `garage` user and has no group or other permission
        bits (mode 0400 or 0600): nixos_config `keys` with
        `user = "garage"` and the default `permissions = "0400"` do that.
      '';
    };

  secretFiles = [
    cfg.rpcSecretFile
    cfg.adminTokenFile
    cfg.metricsTokenFile
  ];
in
{
  imports = [
    ./keys.nix
    (lib.mkRemovedOptionModule [
      "fediversity"
      "garageNode"
      "openAdminFirewall"
    ] "The admin API now listens on the node's localhost only; garage_bucket reaches it through an SSH tunnel (its `ssh` input).")
  ];

  options.fediversity.garageNode = {
    enable = mkEnableOption "a dedicated Garage node for the Fediverse services' media";

    package = mkPackageOption pkgs "garage" {
      extraDescription = "Garage 1.x (admin API v1) and 2.x (admin API v2) both work with garage_bucket.";
    };

    rpcSecretFile = secretPath "rpc-secret";
    adminTokenFile = secretPath "admin-token";
    metricsTokenFile = secretPath "metrics-token" // {
      description = ''
        Absolute path, on the Garage node, of a file holding the token that
        `/metrics` of the admin API requires (Garage's `metrics_token_file`);
        the same rules as for `adminTokenFile` apply.
      '';
    };

    replicationFactor = mkOption {
      type = types.ints.between 1 7;
      default = 1;
      description = ''
        How many nodes hold a copy of each object (Garage's
        `replication_factor`): 1 for a single node, 3 for a cluster of nodes
        in (at least) three zones, each with this module and the same value.
        Give garage_cluster the same `replicationFactor`.  Garage cannot
        change it once data is stored.
      '';
    };

    consistencyMode = mkOption {
      type = types.enum [
        "consistent"
        "degraded"
        "dangerous"
      ];
      default = "consistent";
      description = ''
        Garage's `consistency_mode`: `consistent` (reads and writes wait for
        a quorum: read-after-write holds), `degraded` (reads from one node:
        available with one node of three left, reads may be stale) or
        `dangerous` (writes to one node too).  Every node of a cluster must
        have the same.
      '';
    };

    zone = mkOption {
      type = types.strMatching "[A-Za-z0-9_.-]+";
      default = "dc1";
      example = "paris";
      description = ''
        The zone (failure domain: a site, a building) this node is in.
        Garage keeps the copies of an object in different zones.  In a
        cluster, garage_cluster assigns the zones: give its entry for this
        node the same `zone` (the cluster example takes both from one list).
      '';
    };

    rpcPublicAddr = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "192.0.2.10:3901";
      description = ''
        Garage's `rpc_public_addr`: the address other nodes reach this one's
        RPC port at, `<host>:<rpcPort>` (needed in a cluster).  garage_cluster
        names the node by it (its `rpcAddress`), or by the machine's host.
      '';
    };

    bootstrapPeers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d@192.0.2.11:3901" ];
      description = ''
        Other nodes, as `<node id>@<address>:<rpc port>` (`garage node id`
        prints a node's).  Not needed with garage_cluster, which connects the
        nodes itself.
      '';
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
    webPort = mkOption {
      type = types.port;
      default = 3902;
      example = 80;
      description = ''
        Port of the web endpoint, which serves the buckets with website
        access to browsers (Garage has no anonymous S3 access).  Below 1024
        the service gets `CAP_NET_BIND_SERVICE` to bind it.
      '';
    };
    adminPort = mkOption {
      type = types.port;
      default = 3903;
      description = ''
        Port of the admin API, on 127.0.0.1 only.  garage_bucket reaches it
        through an SSH tunnel: give it `adminEndpoint = "http://127.0.0.1:<adminPort>"`
        and the node's `ssh`.
      '';
    };

    webRootDomain = mkOption {
      type = types.nullOr (types.strMatching "\\..+");
      default = null;
      example = ".web.example.org";
      description = ''
        Garage's `[s3_web] root_domain`: a bucket with website access is
        served at `<its global alias><webRootDomain>` (point a wildcard DNS
        record at this node).  Give garage_bucket the same value as
        `website.rootDomain`; its `websiteEndpoint` output is then the
        bucket's public URL.  null: no web endpoint.
      '';
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

    layout = {
      capacity = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "100G";
        description = ''
          With one node (replicationFactor = 1): the capacity this node is
          given in Garage's cluster layout, applied once by the
          `garage-layout` unit when the node has no role yet, so that buckets
          can be created right after the first deployment.  null: apply a
          layout by hand (`garage layout assign`, `garage layout apply`).
        '';
      };
      zone = mkOption {
        type = types.str;
        default = cfg.zone;
        defaultText = lib.literalExpression "config.fediversity.garageNode.zone";
        description = "The zone the `garage-layout` unit assigns a single node to.";
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the S3 port, the web port (with webRootDomain), and the RPC port in a cluster (replicationFactor above 1).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.replicationFactor == 1 || cfg.rpcPublicAddr != null;
        message = "fediversity.garageNode: replicationFactor = ${toString cfg.replicationFactor} makes this node one of a cluster and needs rpcPublicAddr, so that the other nodes can reach this one.";
      }
      {
        assertion = cfg.layout.capacity == null || cfg.replicationFactor == 1;
        message = "fediversity.garageNode: layout.capacity applies a single node's layout; a cluster's layout is garage_cluster's job (or assign and apply it by hand).";
      }
      {
        assertion = lib.all (file: !lib.hasPrefix builtins.storeDir file) secretFiles;
        message = "fediversity.garageNode: the secret files must not be in the Nix store, which every user can read.";
      }
      {
        assertion = !(config.services.mastodon.enable || config.services.peertube.enable || config.services.pixelfed.enable);
        message = "fediversity.garageNode: a Garage node is dedicated to storage; run Mastodon, PeerTube and Pixelfed on other machines (see fediversity.s3Client).";
      }
    ];

    services.garage = {
      enable = true;
      inherit (cfg) package;
      settings =
        {
          replication_factor = cfg.replicationFactor;
          consistency_mode = cfg.consistencyMode;
          db_engine = cfg.dbEngine;
          data_dir = cfg.dataDir;
          metadata_dir = cfg.metadataDir;
          rpc_bind_addr = "[::]:${toString cfg.rpcPort}";
          # Garage reads its secrets from these files itself.  Not systemd
          # credentials: under systemd 254 and later a LoadCredential= file
          # carries an ACL for the service's user and reads as mode 0440,
          # and Garage refuses a secret file with any group or other bit
          # ("File ... is world-readable! (mode: 0100440, expected 0600)").
          # The files are owned by the `garage` user, mode 0400 or 0600.
          rpc_secret_file = cfg.rpcSecretFile;
          bootstrap_peers = cfg.bootstrapPeers;
          s3_api = {
            api_bind_addr = "[::]:${toString cfg.s3Port}";
            s3_region = cfg.region;
          };
          admin = {
            # Never on the network: the token would cross it in clear.
            api_bind_addr = "127.0.0.1:${toString cfg.adminPort}";
            admin_token_file = cfg.adminTokenFile;
            metrics_token_file = cfg.metricsTokenFile;
          };
        }
        // lib.optionalAttrs (cfg.rpcPublicAddr != null) { rpc_public_addr = cfg.rpcPublicAddr; }
        // lib.optionalAttrs (cfg.webRootDomain != null) {
          s3_web = {
            bind_addr = "[::]:${toString cfg.webPort}";
            root_domain = cfg.webRootDomain;
            index = "index.html";
          };
        };
    };

    # A fixed user rather than a dynamic one, so that data and metadata may
    # live anywhere (another disk) with the right owner, and so that the
    # secret files can be owned by it before Garage first starts.
    users.users.garage = {
      isSystemUser = true;
      group = "garage";
      description = "Garage object store";
      # NixOS makes /run/keys mode 0750, group `keys`: Garage reads its
      # secret files there itself, so it must be able to enter the directory.
      extraGroups = [ "keys" ];
    };
    users.groups.garage = { };
    systemd.tmpfiles.rules = [
      "d ${cfg.dataDir} 0700 garage garage - -"
      "d ${cfg.metadataDir} 0700 garage garage - -"
    ];
    # The zone shows in `systemctl status garage` (Garage itself learns it from the layout).
    systemd.services.garage.description = lib.mkForce "Garage object store, zone ${cfg.zone}";
    systemd.services.garage.serviceConfig = {
      DynamicUser = lib.mkForce false;
      User = "garage";
      Group = "garage";
      ReadWritePaths = [
        cfg.dataDir
        cfg.metadataDir
      ];
      AmbientCapabilities = lib.optional (cfg.webRootDomain != null && cfg.webPort < 1024) "CAP_NET_BIND_SERVICE";
    };
    # Started once all three secret files exist (at once when keys are
    # uploaded before activation, else as soon as the last one arrives).
    # Uploaded before the activation that creates the garage user: given to it
    # during that activation, before Garage starts (keys.nix).
    fediversity.keyOwners = lib.genAttrs secretFiles (_: {
      user = "garage";
      group = "garage";
    });
    fediversity.waitForKeys = {
      garage = secretFiles;
    } // lib.optionalAttrs (cfg.layout.capacity != null) { garage-layout = secretFiles; };

    # A fresh single node stores nothing before it has a layout: give it one,
    # once.  A oneshot, so a switch waits for it, and garage_bucket can create
    # buckets right after the node's nixos_config.
    systemd.services.garage-layout = mkIf (cfg.layout.capacity != null) {
      description = "Garage cluster layout for this single node";
      wantedBy = [ "multi-user.target" ];
      after = [ "garage.service" ];
      requires = [ "garage.service" ];
      path = [ cfg.package ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = ''
        for _ in $(seq 1 60); do
          if status=$(garage status 2>/dev/null); then break; fi
          status=""
          sleep 1
        done
        if [ -z "$status" ]; then
          echo "garage-layout: Garage does not answer on its RPC port" >&2
          exit 1
        fi
        case "$status" in
          *"NO ROLE ASSIGNED"*) ;;
          *) exit 0 ;;  # the node has its role already
        esac
        id=$(garage node id -q | cut -d@ -f1)
        garage layout assign -z ${lib.escapeShellArg cfg.layout.zone} -c ${lib.escapeShellArg cfg.layout.capacity} "$id"
        version=$(garage layout show | sed -n 's/.*[Cc]urrent cluster layout version: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
        garage layout apply --version $(( ''${version:-0} + 1 ))
      '';
    };

    networking.firewall.allowedTCPPorts = lib.optionals cfg.openFirewall (
      [ cfg.s3Port ]
      ++ lib.optional (cfg.webRootDomain != null) cfg.webPort
      ++ lib.optional (cfg.replicationFactor > 1) cfg.rpcPort
    );
  };
}

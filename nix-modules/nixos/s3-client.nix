# Mastodon, PeerTube and Pixelfed store their media in an external bucket
# (one made by the garage_bucket resource, typically on a dedicated Garage node).
#
#   fediversity.s3Client.mastodon = {
#     enable = true;
#     endpoint = "https://s3.example.org";      # garage_bucket output s3Endpoint
#     region = "garage";                         # output region
#     bucket = "mastodon-media";                 # output globalAlias
#     accessKeyId = "GK31c2f218a2e44f485b94239e"; # output keys.<name>.accessKeyId
#     secretAccessKeyFile = "/var/lib/secrets/mastodon-s3";
#     publicUrl = "http://mastodon-media.web.example.org";  # output websiteEndpoint
#   };
#
# `bucketSettings` in this flake's `lib` turns garage_bucket's outputs into
# these (but the secret's file).  The secret access key is read from a file on
# the machine (nixos_config `keys`, /run/keys/<service>-s3 in the MVP) when the
# service starts: a oneshot unit turns it into an environment file under /run
# (mode 0600, root), which the service's units load.  It never enters the Nix
# store, and it is not an option value.  The units wait for the file
# (fediversity.waitForKeys): a switch before the key arrives skips them, and
# they start when it is written.
#
# What this module sets in the services' own options it sets with mkDefault
# (or adds to a list), so an operator's own value wins without a conflict.
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
    mkMerge
    mkOption
    types
    ;
  cfg = config.fediversity.s3Client;
  runDir = "/run/fediversity-s3";

  bucketOptions =
    service:
    { ... }:
    {
      options = {
        enable = mkEnableOption "media storage in an external S3 bucket for ${service}";
        endpoint = mkOption {
          type = types.strMatching "https?://.+";
          example = "https://s3.example.org";
          description = "URL of the S3 API (garage_bucket's `s3Endpoint` output).";
        };
        region = mkOption {
          type = types.str;
          default = "garage";
          description = "S3 region (garage_bucket's `region` output).";
        };
        bucket = mkOption {
          type = types.str;
          description = "Bucket name (garage_bucket's `globalAlias` output).";
        };
        accessKeyId = mkOption {
          type = types.str;
          description = "Access key id (garage_bucket's `keys.<name>.accessKeyId` output).";
        };
        secretAccessKeyFile = mkOption {
          type = types.strMatching "/.*";
          example = "/var/lib/secrets/${service}-s3";
          description = ''
            Absolute path, on this machine, of a file holding the secret access
            key (nothing else; a trailing newline is ignored).  A string, not a
            Nix path, so that the secret never enters the Nix store.
          '';
        };
        publicUrl = mkOption {
          type = types.nullOr (types.strMatching "https?://.+");
          default = null;
          example = "http://mastodon-media.web.example.org";
          description = ''
            Base URL browsers fetch the media from: the bucket's website
            endpoint (garage_bucket's `websiteEndpoint` output, the bucket's
            global alias under Garage's web `root_domain`), or a CDN or proxy
            in front of it.  Garage has no anonymous S3 access, so null (media
            served from the S3 endpoint) works for no browser.
          '';
        };
        units = mkOption {
          type = types.listOf types.str;
          description = "The systemd units that need the secret; the environment file is written before them.";
        };
      };
    };

  # The units of each service that read the secret (from the environment
  # variable AWS_SECRET_ACCESS_KEY, which all three services' S3 clients use).
  services = {
    mastodon.units = [ "mastodon-init-dirs.service" ];
    peertube.units = [ "peertube.service" ];
    pixelfed.units = [
      "pixelfed-data-setup.service"
      "phpfpm-pixelfed.service"
      "pixelfed-horizon.service"
    ];
  };

  envFile = service: "${runDir}/${service}.env";

  # A oneshot that writes `<NAME>=<secret>` for the service's units to load.
  secretUnit = service: c: {
    "fediversity-s3-secret-${service}" = {
      description = "S3 secret access key of ${service}, as an environment file";
      wantedBy = [ "multi-user.target" ];
      before = c.units;
      requiredBy = c.units;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        LoadCredential = [ "secret:${c.secretAccessKeyFile}" ];
        UMask = "0077";
      };
      path = [ pkgs.coreutils ];
      script = ''
        mkdir -p ${runDir}
        secret=$(cat "$CREDENTIALS_DIRECTORY/secret")
        printf 'AWS_SECRET_ACCESS_KEY=%s\n' "$secret" > ${envFile service}.tmp
        mv ${envFile service}.tmp ${envFile service}
      '';
    };
  };

  hostOf = url: lib.head (lib.splitString "/" (lib.last (lib.splitString "://" url)));
  schemeOf = url: lib.head (lib.splitString "://" url);

  enabled = lib.filterAttrs (_: c: c.enable) cfg;

  # Each value with mkDefault: the operator's own setting of the same option wins.
  defaults = lib.mapAttrs (_: lib.mkDefault);

  # PeerTube's extra options: its files browsers must not see go to a bucket
  # without website access.
  peertubeOptions = {
    options.privateBucket = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "peertube-private";
      description = ''
        Bucket (without website access) for what PeerTube serves only
        through itself: user exports and original video files.  The same key
        must be allowed on it (garage_bucket's `keys` entry with this
        bucket's key's `accessKeyId`).  null stores them in `bucket` too,
        which makes them public when the bucket has website access.
      '';
    };
  };
in
{
  imports = [ ./keys.nix ];

  options.fediversity.s3Client = lib.mapAttrs (
    service: defaults:
    mkOption {
      type = types.submodule (
        [
          (bucketOptions service)
          { units = lib.mkDefault defaults.units; }
        ]
        ++ lib.optional (service == "peertube") peertubeOptions
      );
      default = { };
      description = "Where ${service} stores its media.";
    }
  ) services;

  config = mkMerge [
    {
      assertions = lib.mapAttrsToList (service: c: {
        assertion = !lib.hasPrefix builtins.storeDir c.secretAccessKeyFile;
        message = "fediversity.s3Client.${service}.secretAccessKeyFile must not be in the Nix store, which every user can read.";
      }) enabled;
      systemd.services = lib.concatMapAttrs secretUnit enabled;
      # The secret's unit and the units that need it start once the key is there.
      fediversity.waitForKeys = lib.concatMapAttrs (
        service: c:
        lib.genAttrs ([ "fediversity-s3-secret-${service}" ] ++ map (lib.removeSuffix ".service") c.units) (_: [
          c.secretAccessKeyFile
        ])
      ) enabled;
    }

    (mkIf cfg.mastodon.enable (
      let
        c = cfg.mastodon;
      in
      {
        # Plain values: extraConfig is `types.attrs`, which merges definitions
        # with `//` (never a conflict) and would pass an mkDefault through as is.
        services.mastodon.extraConfig = (
          {
            S3_ENABLED = "true";
            S3_ENDPOINT = c.endpoint;
            S3_PROTOCOL = schemeOf c.endpoint;
            S3_HOSTNAME = hostOf c.endpoint;
            S3_REGION = c.region;
            S3_BUCKET = c.bucket;
            AWS_ACCESS_KEY_ID = c.accessKeyId;
          }
          // lib.optionalAttrs (c.publicUrl != null) { S3_ALIAS_HOST = hostOf c.publicUrl; }
        );
        services.mastodon.extraEnvFiles = [ (envFile "mastodon") ];
      }
    ))

    (mkIf cfg.peertube.enable (
      let
        c = cfg.peertube;
        base = lib.optionalString (c.publicUrl != null) c.publicUrl;
        private = if c.privateBucket != null then c.privateBucket else c.bucket;
      in
      {
        services.peertube.settings.object_storage = {
          enabled = lib.mkDefault true;
          endpoint = lib.mkDefault c.endpoint;
          region = lib.mkDefault c.region;
          # Garage implements no object ACLs (PutObjectAcl): PeerTube must not set any.
          upload_acl = defaults {
            public = null;
            private = null;
          };
          # The key id goes with the secret: the AWS SDK reads both from the environment.
          streaming_playlists = defaults {
            bucket_name = c.bucket;
            prefix = "streaming-playlists/";
            base_url = base;
          };
          web_videos = defaults {
            bucket_name = c.bucket;
            prefix = "web-videos/";
            base_url = base;
          };
          user_exports = defaults {
            bucket_name = private;
            prefix = "user-exports/";
          };
          original_video_files = defaults {
            bucket_name = private;
            prefix = "original-video-files/";
          };
        };
        # PeerTube's module has one environment file; ours is its default.  An
        # operator who sets their own must put AWS_SECRET_ACCESS_KEY in it.
        services.peertube.serviceEnvironmentFile = lib.mkDefault (envFile "peertube");
        warnings = lib.optional (config.services.peertube.serviceEnvironmentFile != envFile "peertube") ''
          fediversity.s3Client.peertube: services.peertube.serviceEnvironmentFile is set elsewhere, so
          ${envFile "peertube"} (the S3 secret) is not loaded: put AWS_SECRET_ACCESS_KEY in that file.
        '';
        systemd.services.peertube.environment.AWS_ACCESS_KEY_ID = lib.mkDefault c.accessKeyId;
      }
    ))

    (mkIf cfg.pixelfed.enable (
      let
        c = cfg.pixelfed;
      in
      {
        services.pixelfed.settings = defaults {
          PF_ENABLE_CLOUD = true;
          FILESYSTEM_CLOUD = "s3";
          AWS_ACCESS_KEY_ID = c.accessKeyId;
          AWS_DEFAULT_REGION = c.region;
          AWS_BUCKET = c.bucket;
          AWS_ENDPOINT = c.endpoint;
          AWS_URL = if c.publicUrl != null then c.publicUrl else "${c.endpoint}/${c.bucket}";
          AWS_USE_PATH_STYLE_ENDPOINT = true;
        };
        systemd.services = lib.genAttrs (map (lib.removeSuffix ".service") c.units) (_: {
          serviceConfig.EnvironmentFile = [ (envFile "pixelfed") ];
        });
      }
    ))
  ];
}

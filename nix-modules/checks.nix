# What needs nixpkgs, checked by `nix flake check` (see docs/nix.md).
{ pkgs, self }:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;

  # NixOps4's provider interface, reduced to what a provider module sets.
  providerInterface =
    { lib, ... }:
    {
      options = {
        # The documentation metadata renderProviderDocs reads.
        name = lib.mkOption { type = lib.types.str; };
        description = lib.mkOption { type = lib.types.str; };
        sourceBaseUrl = lib.mkOption { type = lib.types.str; };
        sourceName = lib.mkOption { type = lib.types.str; };
        executable = lib.mkOption { type = lib.types.str; };
        args = lib.mkOption { type = lib.types.listOf lib.types.str; };
        resourceTypes = lib.mkOption {
          type = lib.types.lazyAttrsOf (
            lib.types.submodule {
              options = {
                description = lib.mkOption { type = lib.types.str; };
                requireState = lib.mkOption { type = lib.types.bool; };
                inputs = lib.mkOption { type = lib.types.deferredModule; };
                outputs = lib.mkOption { type = lib.types.deferredModule; };
              };
            }
          );
        };
      };
    };

  provider =
    (lib.evalModules {
      modules = [
        providerInterface
        self.modules.nixops4Provider.fediversity
      ];
      specialArgs.resourceProviderSystem = system;
    }).config;

  # Every option of every resource type, with nixpkgs' real option types.
  optionDocs = lib.mapAttrs (
    _: rt:
    lib.genAttrs [ "inputs" "outputs" ] (
      side:
      map (o: { inherit (o) name type; }) (
        lib.optionAttrSetToDocList (lib.evalModules { modules = [ rt.${side} ]; }).options
      )
    )
  ) provider.resourceTypes;

  nixos =
    modules:
    (lib.nixosSystem {
      inherit system;
      modules = [
        self.nixosModules.default
        {
          boot.isContainer = true;
          system.stateVersion = lib.trivial.release;
        }
      ] ++ modules;
    }).config;

  # Instantiating the toplevel evaluates the whole system without building it.
  evaluates =
    name: config:
    pkgs.writeText "${name}-evaluates" (builtins.unsafeDiscardStringContext config.system.build.toplevel.drvPath);

  garage3 = nixos [
    {
      fediversity.garageNode = {
        enable = true;
        rpcSecretFile = "/run/keys/rpc";
        adminTokenFile = "/run/keys/admin";
        metricsTokenFile = "/run/keys/metrics";
        replicationFactor = 3;
        rpcPublicAddr = "192.0.2.10:3901";
        bootstrapPeers = [ "00@192.0.2.11:3901" ];
        openFirewall = true;
      };
    }
  ];
in
{
  package = self.packages.${system}.default;

  provider-module = pkgs.writeText "provider-options.json" (
    builtins.toJSON {
      inherit (provider) executable args;
      types = lib.mapAttrs (_: rt: { inherit (rt) description requireState; }) provider.resourceTypes;
      options = optionDocs;
    }
  );

  garage-node-single = evaluates "garage-node-single" (nixos [
    {
      fediversity.garageNode = {
        enable = true;
        rpcSecretFile = "/run/keys/rpc";
        adminTokenFile = "/run/keys/admin";
        metricsTokenFile = "/run/keys/metrics";
        webRootDomain = ".web.example.org";
      };
    }
  ]);

  garage-node-three =
    assert garage3.services.garage.settings.replication_factor == 3;
    assert lib.all (port: lib.elem port garage3.networking.firewall.allowedTCPPorts) [ 3900 3901 ];
    assert !lib.elem 3903 garage3.networking.firewall.allowedTCPPorts;
    evaluates "garage-node-three" garage3;

  s3-clients = evaluates "s3-clients" (nixos [
    (
      { ... }:
      let
        bucket = name: {
          enable = true;
          endpoint = "https://s3.example.org";
          bucket = "${name}-media";
          accessKeyId = "GK0123456789abcdef01234567";
          secretAccessKeyFile = "/run/keys/${name}-s3";
          publicUrl = "http://${name}-media.web.example.org";
        };
      in
      {
        fediversity.s3Client = {
          mastodon = bucket "mastodon";
          peertube = bucket "peertube";
          pixelfed = bucket "pixelfed";
        };
        services.mastodon = {
          enable = true;
          localDomain = "mastodon.example.org";
          smtp.fromAddress = "mastodon@example.org";
          streamingProcesses = 1;
        };
        services.peertube = {
          enable = true;
          localDomain = "peertube.example.org";
          database.createLocally = true;
          redis.createLocally = true;
          secrets.secretsFile = "/var/lib/secrets/peertube";
        };
        services.pixelfed = {
          enable = true;
          domain = "pixelfed.example.org";
          secretFile = "/var/lib/secrets/pixelfed";
        };
      }
    )
  ]);
}

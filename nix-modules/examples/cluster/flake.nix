{
  description = "A resilient Fediversity MVP: a three-node Garage cluster, deployed with NixOps4 and fediversity-providers";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # NixOps4's Nix API (members, lib.mkRoot, the `nixops4` output) as of this revision.
    nixops4.url = "github:nixops4/nixops4/53d855472af18d85457f327fa9aeb268543ff74e";
    # This repository's nix-modules flake; point it at the repository's URL
    # (`git+https://...?dir=nix-modules`) when copying this example elsewhere.
    fediversity-providers.url = "path:../../..?dir=nix-modules";
    fediversity-providers.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixops4,
      fediversity-providers,
    }:
    let
      machines = import ./machines.nix;
      system = "x86_64-linux";
      nixosSystem =
        name: extraModules:
        nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [
            fediversity-providers.nixosModules.default
            machines.${name}
          ] ++ extraModules;
        };
    in
    {
      # The machines without what the deployment adds, e.g. for `nixos-rebuild build-vm`.
      nixosConfigurations = builtins.mapAttrs (name: _: nixosSystem name [ ]) machines;

      # What `nixops4 apply` deploys.
      nixops4 = nixops4.lib.mkRoot {
        modules = [
          (import ./deployment.nix {
            providerModules = {
              fediversity = fediversity-providers.modules.nixops4Provider.fediversity;
              local = nixops4.modules.nixops4Provider.local;
            };
            nixos = name: extraModules: (nixosSystem name extraModules).config.system.build.toplevel;
            inherit (fediversity-providers.lib) bucketSettings;
          })
        ];
      };
    };
}

{
  description = "The Fediversity April MVP, deployed with NixOps4 and fediversity-providers";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    nixops4.url = "github:nixops4/nixops4";
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
      nixos =
        name: extraModules:
        (nixpkgs.lib.nixosSystem {
          inherit system;
          modules = [
            fediversity-providers.nixosModules.default
            machines.${name}
          ] ++ extraModules;
        }).config.system.build.toplevel;
    in
    {
      # The machines without their S3 settings, e.g. for `nixos-rebuild build-vm`.
      nixosConfigurations = builtins.mapAttrs (name: _: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          fediversity-providers.nixosModules.default
          machines.${name}
        ];
      }) machines;

      nixops4Deployments.default = nixops4.lib.mkDeployment {
        modules = [
          (import ./deployment.nix {
            providerModules = {
              fediversity = fediversity-providers.modules.nixops4Provider.fediversity;
              local = nixops4.modules.nixops4Provider.local;
            };
            inherit nixos;
            inherit (fediversity-providers.lib) bucketSettings;
          })
        ];
      };
    };
}

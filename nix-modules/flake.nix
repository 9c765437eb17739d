{
  description = "NixOps4 resource providers for Fediversity: the package, the NixOps4 provider module and NixOS modules";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        fediversity-providers = pkgs.python3Packages.callPackage ./package.nix { inherit (pkgs) nix openssh; };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.fediversity-providers;
      });

      # For `providers.fediversity = inputs.fediversity-providers.modules.nixops4Provider.fediversity;`
      # in a NixOps4 deployment.  The provider runs on the deployer, whose
      # system NixOps4 passes as `resourceProviderSystem`.
      modules.nixops4Provider.fediversity =
        { lib, resourceProviderSystem, ... }:
        import ./provider.nix { package = self.packages.${resourceProviderSystem}.default; } { inherit lib; };

      nixosModules = {
        garage-node = ./nixos/garage-node.nix;
        s3-client = ./nixos/s3-client.nix;
        keys = ./nixos/keys.nix;
        default = {
          imports = [
            ./nixos/garage-node.nix
            ./nixos/s3-client.nix
          ];
        };
      };

      lib = import ./lib.nix;

      # `nix flake check 'git+file:.?dir=nix-modules'` (needs nixpkgs): builds the
      # package and evaluates the modules.
      checks = forAllSystems (pkgs: import ./checks.nix { inherit pkgs self; });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}

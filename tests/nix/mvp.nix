# The MVP example (nix-modules/examples/mvp), or another example given as
# `exampleDir` (nix-modules/examples/cluster), as NixOps4 evaluates it, with
# upstream NixOps4's own nix/ (./nixops4.nix), the nixpkgs lib, the real
# NixOS module system (./nixos) and this repository's flakes, and NixOps4's
# apply simulated: members are applied in waves, each wave being the members
# whose inputs evaluate with the outputs of the members applied before
# (NixOps4 evaluates `rootFunction` with the outputs it has, and applies what
# it can).  `outputs` (from the test) gives each member's outputs once applied.
#
#   nix-instantiate --eval --strict --json -E 'import ./mvp.nix { outputs = ...; }'
{
  outputs,
  # Which example: the MVP, or another one shaped like it (flake.nix with
  # nixosConfigurations and a `nixops4` root).
  exampleDir ? ../../nix-modules/examples/mvp,
}:
let
  lib = import ../reference/nixpkgs-lib/lib;
  pkgs = import ./pkgs.nix { inherit lib; };
  nixosSystem = import ./nixos/system.nix { inherit lib pkgs; };
  nixpkgs = {
    lib = lib // {
      inherit nixosSystem;
    };
  };
  nixops4 = import ./nixops4.nix { inherit lib pkgs; };

  providersFlake = (import ../../nix-modules/flake.nix).outputs {
    self = providersFlake // {
      packages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: {
        default = pkgs.storePath "fediversity-providers" system;
      });
    };
    inherit nixpkgs;
  };

  example = (import (exampleDir + "/flake.nix")).outputs {
    self = example;
    inherit nixpkgs nixops4;
    fediversity-providers = providersFlake;
  };

  root = example.nixops4;
  evalWith =
    applied:
    root.rootFunction {
      resourceProviderSystem = "x86_64-linux";
      outputValues = lib.mapAttrs (name: _: applied.${name} or (throw "${name} is not applied yet")) outputs;
    };
  names = builtins.attrNames (evalWith { }).members;
  ready =
    applied: name:
    !(applied ? ${name})
    && (builtins.tryEval (builtins.deepSeq (evalWith applied).members.${name}.resource.inputs true)).success;
  waves =
    applied:
    let
      next = lib.filter (ready applied) names;
    in
    if next == [ ] then
      [ ]
    else
      [ next ] ++ waves (applied // lib.genAttrs next (name: outputs.${name}));
  final = evalWith outputs;
in
{
  _type = root._type;
  inherit names;
  waves = waves { };
  members = lib.mapAttrs (_: m: m.resource) final.members;
  systems = lib.mapAttrs (name: _: (example.nixosConfigurations.${name}).config.system.build.toplevel) example.nixosConfigurations;
}

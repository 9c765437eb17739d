# `nixpkgs.lib.nixosSystem`, with the real module system and the real nixpkgs
# modules that are here (services.garage, assertions), the rest of NixOS
# declared by ./options.nix, stand-in packages (../pkgs.nix) and a stand-in
# toplevel (./toplevel.nix).
{ lib, pkgs }:
let
  reference = ../../reference/nixpkgs-nixos/nixos/modules;
in
{
  modules,
  system ? "x86_64-linux",
  specialArgs ? { },
}:
lib.evalModules {
  class = "nixos";
  specialArgs = {
    modulesPath = reference;
  } // specialArgs;
  modules = [
    (reference + "/services/web-servers/garage.nix")
    (reference + "/misc/assertions.nix")
    ./options.nix
    ./toplevel.nix
    {
      _module.args = {
        inherit pkgs;
        utils = { };
      };
    }
  ] ++ modules;
}

# Stands in for what a NixOS system builds: `system.build.toplevel` is a store
# path string that depends on the whole evaluated configuration, after
# assertions and warnings are handled as nixpkgs' top-level.nix does (a failed
# assertion stops the evaluation with its message).  `system.build.view` is
# that configuration as JSON-able data, for the tests to look into.
{ config, lib, pkgs, ... }:
let
  enabledServices = lib.filterAttrs (_: service: service.enable or true) config.services;
  view = {
    inherit (config) systemd users environment networking;
    services = enabledServices;
    system.stateVersion = config.system.stateVersion;
    system.activationScripts = config.system.activationScripts;
    fediversity.keyOwners = config.fediversity.keyOwners or { };
  };
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  checked =
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatStringsSep "\n" (map (m: "- ${m}") failed)}"
    else
      lib.showWarnings config.warnings view;
in
{
  options.system.build = lib.mkOption {
    default = { };
    type = lib.types.submoduleWith {
      modules = [ { freeformType = with lib.types; lazyAttrsOf (uniq unspecified); } ];
    };
  };
  config.system.build = {
    view = checked;
    toplevel = pkgs.storePath "nixos-system-${config.networking.hostName}" (builtins.toJSON checked);
  };
}
// { }

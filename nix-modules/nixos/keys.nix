# Units that wait for their keys: secret files that arrive on the machine
# from outside the Nix store, e.g. through nixos_config's `keys`.
#
#   fediversity.waitForKeys.mastodon-web = [ "/run/keys/mastodon-s3" ];
#
# A unit listed here starts only when all its key files exist, so a switch
# never fails for a missing key:
# - each file is a `ConditionPathExists=` of the unit: while one is missing,
#   systemd skips the unit (a skipped unit is not a failed one, so the
#   activation goes on and nothing is rolled back);
# - a path unit `<unit>-keys.path` watches the files and starts the unit when
#   one of them is written (`PathChanged=`, once per change, so it never
#   loops while a key is still missing).
# Keys uploaded before activation (nixos_config's default) are there when the
# unit starts; keys uploaded after it, or written again after a reboot emptied
# /run/keys, start it when they arrive.  A key that changes while the unit runs
# does not restart it: restart it, or deploy a configuration that does.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.fediversity.waitForKeys;
in
{
  options.fediversity.waitForKeys = mkOption {
    type = types.attrsOf (types.listOf (types.strMatching "/.*"));
    default = { };
    example = {
      mastodon-web = [ "/run/keys/mastodon-s3" ];
    };
    description = ''
      Service units (names without `.service`) and the absolute paths of
      the key files each needs.  The unit starts only once every file
      exists, and is started when one of them is written.
    '';
  };

  config = lib.mkIf (cfg != { }) {
    assertions = lib.mapAttrsToList (unit: files: {
      assertion = lib.all (file: !lib.hasPrefix builtins.storeDir file) files;
      message = "fediversity.waitForKeys.${unit}: a key file in the Nix store is readable by every user; put keys outside it (e.g. /run/keys).";
    }) cfg;

    systemd.services = lib.mapAttrs (_: files: { unitConfig.ConditionPathExists = files; }) cfg;

    systemd.paths = lib.mapAttrs' (
      unit: files:
      lib.nameValuePair "${unit}-keys" {
        description = "Start ${unit}.service when its keys arrive";
        wantedBy = [ "multi-user.target" ];
        pathConfig = {
          PathChanged = files;
          Unit = "${unit}.service";
        };
      }
    ) cfg;
  };
}

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
#
# Keys whose owner the new system creates (a service's user):
#
#   fediversity.keyOwners."/run/keys/peertube-secrets" = { user = "peertube"; group = "peertube"; };
#
# nixos_config uploads a pre-activation key whose user or group the machine
# does not have yet owned by root (with its mode), and gives it to its owner
# once the new system is active.  In between, the activation starts the
# units: an activation script, run right after NixOS creates its users and
# groups and before any unit starts, gives each file listed here to its
# owner, so the unit that reads it can.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.fediversity.waitForKeys;
  owners = config.fediversity.keyOwners;
  notInStore = what: file: {
    assertion = !lib.hasPrefix builtins.storeDir file;
    message = "${what}: a key file in the Nix store is readable by every user; put keys outside it (e.g. /run/keys).";
  };
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

  options.fediversity.keyOwners = mkOption {
    type = types.attrsOf (
      types.submodule {
        options = {
          user = mkOption {
            type = types.strMatching "[A-Za-z_][A-Za-z0-9_.-]{0,31}";
            description = "The user the key file is given to.";
          };
          group = mkOption {
            type = types.strMatching "[A-Za-z_][A-Za-z0-9_.-]{0,31}";
            description = "The group the key file is given to.";
          };
        };
      }
    );
    default = { };
    example = {
      "/run/keys/peertube-secrets" = {
        user = "peertube";
        group = "peertube";
      };
    };
    description = ''
      Key files (absolute paths) whose owner this system creates.  During
      activation, right after the users and groups exist and before any unit
      starts, each file that is there (a regular file, not a link) is given
      to its owner: a key uploaded before the activation that creates its
      user is readable by that user when its unit starts.
    '';
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg != { }) {
      assertions = lib.concatLists (
        lib.mapAttrsToList (unit: files: map (notInStore "fediversity.waitForKeys.${unit}") files) cfg
      );

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
    })
    (lib.mkIf (owners != { }) {
      assertions = lib.mapAttrsToList (file: _: notInStore "fediversity.keyOwners" file) owners
        ++ lib.mapAttrsToList (file: _: {
          assertion = lib.hasPrefix "/" file && !(lib.hasInfix "/../" "${file}/") && !(lib.hasInfix "/./" "${file}/");
          message = "fediversity.keyOwners: ${file} is not an absolute, normalised path.";
        }) owners;
      system.activationScripts.fediversity-key-owners = {
        deps = [
          "users"
          "groups"
        ];
        text = lib.concatStrings (
          lib.mapAttrsToList (file: owner: ''
            if [ -f ${lib.escapeShellArg file} ] && [ ! -L ${lib.escapeShellArg file} ]; then
              chown ${lib.escapeShellArg "${owner.user}:${owner.group}"} ${lib.escapeShellArg file} || true
            fi
          '') owners
        );
      };
    })
  ];
}

# The rest of NixOS, as far as the modules under test and the MVP example
# touch it: option declarations with the names and types nixpkgs gives them
# (nixpkgs master, 2026; the file each part mirrors is named above it).  Only
# declarations: what these options do on a real system is nixpkgs' business.
# The real nixpkgs modules that are here are used instead (../../reference/
# nixpkgs-nixos: services.garage, assertions and warnings).
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-lib.nix: unitNameType.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # nixos/lib/systemd-unit-options.nix: unitOption.  A directive is a single
  # value (all definitions equal) or a list (definitions concatenated); a mix
  # of both is an error.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.isList (lib.head defs').value then
        lib.concatMap (
          def:
          if builtins.typeOf def.value == "list" then
            def.value
          else
            throw "The definitions for systemd unit options should be either all lists, representing repeatable options, or all non-lists, but for the option ${lib.showOption loc}, the definitions are a mix of list and non-list ${lib.options.showDefs defs'}"
        ) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  units = mkOption {
    default = [ ];
    type = types.listOf unitNameType;
  };

  # nixos/lib/systemd-unit-options.nix: commonUnitOptions, stage2CommonUnitOptions.
  commonUnitOptions = {
    options = {
      enable = mkOption {
        default = true;
        type = types.bool;
      };
      description = mkOption {
        default = "";
        type = types.singleLineStr;
      };
      requiredBy = units;
      wantedBy = units;
      requires = units;
      wants = units;
      after = units;
      before = units;
      bindsTo = units;
      partOf = units;
      unitConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
      restartTriggers = mkOption {
        default = [ ];
        type = types.listOf types.unspecified;
      };
    };
  };

  # nixos/lib/systemd-unit-options.nix: serviceOptions, stage2ServiceOptions.
  serviceOptions = {
    options = {
      environment = mkOption {
        default = { };
        type =
          with types;
          attrsOf (
            nullOr (oneOf [
              str
              path
              package
            ])
          );
      };
      path = mkOption {
        default = [ ];
        type =
          with types;
          listOf (oneOf [
            package
            str
          ]);
      };
      serviceConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
    };
  };

  # nixos/lib/systemd-unit-options.nix: pathOptions.
  pathOptions = {
    options.pathConfig = mkOption {
      default = { };
      type = types.attrsOf unitOption;
    };
  };

  # pkgs/pkgs-lib/formats.nix: json's value type.
  jsonValue =
    with types;
    nullOr (oneOf [
      bool
      int
      float
      str
      path
      (attrsOf jsonValue)
      (listOf jsonValue)
    ])
    // {
      description = "JSON value";
    };
in
{
  options = {
    # nixos/modules/misc/meta.nix (the maintainers' list is never evaluated here).
    meta = {
      doc = mkOption {
        type = types.path;
        internal = true;
      };
      maintainers = mkOption {
        type = types.listOf types.raw;
        internal = true;
        default = [ ];
      };
    };

    # nixos/modules/misc/version.nix
    # nixos/modules/system/activation/activation-script.nix: scriptType.
    system.activationScripts = mkOption {
      default = { };
      type = types.attrsOf (
        types.either types.str (
          types.submodule {
            options = {
              deps = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              text = mkOption { type = types.lines; };
              supportsDryActivation = mkOption {
                type = types.bool;
                default = false;
              };
            };
          }
        )
      );
    };
    system.stateVersion = mkOption {
      type = types.str;
    };

    # nixos/modules/system/boot/systemd.nix
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule [
          commonUnitOptions
          serviceOptions
        ]
      );
    };
    systemd.paths = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule [
          commonUnitOptions
          pathOptions
        ]
      );
    };
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/config/users-groups.nix
    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              name = mkOption {
                type = types.passwdEntry types.str;
                default = name;
              };
              description = mkOption {
                type = types.passwdEntry types.str;
                default = "";
              };
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              isNormalUser = mkOption {
                type = types.bool;
                default = false;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              extraGroups = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              # nixos/modules/services/networking/ssh/sshd.nix
              openssh.authorizedKeys.keys = mkOption {
                type = types.listOf types.singleLineStr;
                default = [ ];
              };
            };
          }
        )
      );
    };
    users.groups = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              name = mkOption {
                type = types.passwdEntry types.str;
                default = name;
              };
              gid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
            };
          }
        )
      );
    };

    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    # nixos/modules/system/etc/etc.nix
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
              };
              target = mkOption {
                type = types.str;
                default = name;
              };
              text = mkOption {
                default = null;
                type = types.nullOr types.lines;
              };
              source = mkOption {
                type = types.path;
              };
              mode = mkOption {
                type = types.str;
                default = "symlink";
              };
            };
          }
        )
      );
    };

    # nixos/tasks/network-interfaces.nix
    networking.hostName = mkOption {
      default = "nixos";
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
    };
    # nixos/modules/services/networking/firewall.nix
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };

    # nixos/modules/services/networking/ssh/sshd.nix
    services.openssh.enable = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/system/boot/loader/grub/grub.nix, nixos/modules/tasks/filesystems.nix
    boot.loader.grub.device = mkOption {
      default = "";
      type = types.str;
    };
    boot.initrd.availableKernelModules = mkOption {
      default = [ ];
      type = types.listOf types.str;
    };
    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            device = mkOption {
              default = null;
              type = types.nullOr types.nonEmptyStr;
            };
            fsType = mkOption {
              default = "auto";
              type = types.nonEmptyStr;
            };
          };
        }
      );
    };

    # nixos/modules/security/acme/default.nix
    security.acme.acceptTerms = mkOption {
      type = types.bool;
      default = false;
    };
    security.acme.defaults.email = mkOption {
      type = types.nullOr types.str;
      default = null;
    };

    # nixos/modules/services/web-apps/mastodon.nix
    services.mastodon = {
      enable = lib.mkEnableOption "Mastodon, a federated social network server";
      localDomain = mkOption {
        type = types.str;
      };
      configureNginx = mkOption {
        type = types.bool;
        default = false;
      };
      streamingProcesses = mkOption {
        type = types.ints.positive;
      };
      smtp.fromAddress = mkOption {
        type = types.str;
      };
      extraConfig = mkOption {
        type = types.attrs;
        default = { };
      };
      extraEnvFiles = mkOption {
        type = with types; listOf path;
        default = [ ];
      };
    };

    # nixos/modules/services/web-apps/peertube.nix
    services.peertube = {
      enable = lib.mkEnableOption "Peertube";
      localDomain = mkOption {
        type = types.str;
      };
      configureNginx = mkOption {
        type = types.bool;
        default = false;
      };
      settings = mkOption {
        type = types.submodule { freeformType = jsonValue; };
        default = { };
      };
      serviceEnvironmentFile = mkOption {
        type = types.nullOr types.path;
        default = null;
      };
      secrets.secretsFile = mkOption {
        type = types.nullOr types.path;
        default = null;
      };
      database.createLocally = mkOption {
        type = types.bool;
        default = false;
      };
      redis.createLocally = mkOption {
        type = types.bool;
        default = false;
      };
    };

    # nixos/modules/services/web-apps/pixelfed.nix
    services.pixelfed = {
      enable = lib.mkEnableOption "a Pixelfed instance";
      domain = mkOption {
        type = types.str;
      };
      secretFile = mkOption {
        type = types.path;
      };
      settings = mkOption {
        type =
          with types;
          (attrsOf (oneOf [
            bool
            int
            str
          ]));
        default = { };
      };
    };
  };
}

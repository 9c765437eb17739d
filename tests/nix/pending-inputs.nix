# Inputs being added to the schemas in parallel with the Nix side, with the
# shapes agreed for them: nixos_config's `keys`.
# The tests add a part of this module to the provider module only while the
# committed schema lacks that input; once the schema has it, the generated
# provider.nix declares it and this file is not used for it.
{ which }:
{ lib, ... }:
let
  inherit (lib) mkOption types;
  keyType = types.submodule {
    options = {
      text = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      keyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      destDir = mkOption {
        type = types.str;
        default = "/run/keys";
      };
      user = mkOption {
        type = types.str;
        default = "root";
      };
      group = mkOption {
        type = types.str;
        default = "root";
      };
      permissions = mkOption {
        type = types.str;
        default = "0400";
      };
      uploadAt = mkOption {
        type = types.enum [
          "pre-activation"
          "post-activation"
        ];
        default = "pre-activation";
      };
    };
  };
in
{
  resourceTypes =
    lib.optionalAttrs (lib.elem "keys" which) {
      nixos_config.inputs.options.keys = mkOption {
        type = types.attrsOf keyType;
        default = { };
      };
    };
}

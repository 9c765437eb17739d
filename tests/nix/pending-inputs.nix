# Inputs being added to the schemas in parallel with the Nix side, with the
# shapes agreed for them: garage_bucket's `ssh` (nixos_config's `keys` is in
# the schema now).
# The tests add a part of this module to the provider module only while the
# committed schema lacks that input; once the schema has it, the generated
# provider.nix declares it and this file is not used for it.
{ which }:
{ lib, ... }:
let
  inherit (lib) mkOption types;
  sshType = types.submodule {
    options = {
      host = mkOption { type = types.str; };
      port = mkOption {
        type = types.int;
        default = 22;
      };
      user = mkOption {
        type = types.str;
        default = "root";
      };
      hostPublicKey = mkOption { type = types.str; };
      privateKeyFile = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      connectTimeout = mkOption {
        type = types.int;
        default = 10;
      };
    };
  };
in
{
  resourceTypes =
    lib.optionalAttrs (lib.elem "ssh" which) {
      garage_bucket.inputs.options.ssh = mkOption {
        type = types.nullOr sshType;
        default = null;
      };
    };
}

# Stand-ins for the nixpkgs packages the modules under test use: no nixpkgs
# can be fetched here.  A package is a fake store path (with the attributes the
# modules read); a generated file keeps its content, so a test can inspect it.
# Nothing here stands in for the module system or an option: those are real.
{ lib }:
let
  storePath = name: seed: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "${name}:${seed}")}-${name}";
  package = name: {
    type = "derivation";
    inherit name;
    pname = name;
    outPath = storePath name "package";
    meta.mainProgram = name;
  };
  # A file generated from a value: the value stays readable (`passthru.value`).
  generated = name: value: {
    type = "derivation";
    inherit name;
    outPath = storePath name (builtins.toJSON value);
    passthru = { inherit value; };
  };
  # Value types exactly as nixpkgs' pkgs/pkgs-lib/formats.nix declares them.
  jsonValue =
    with lib.types;
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
  tomlValue =
    with lib.types;
    oneOf [
      bool
      int
      float
      str
      path
      (attrsOf tomlValue)
      (listOf tomlValue)
    ]
    // {
      description = "TOML value";
    };
in
{
  inherit storePath;
  garage = package "garage-2.1.0";
  garage_1 = package "garage-1.3.0";
  coreutils = package "coreutils";
  bash = package "bash";
  formats = {
    json =
      { }:
      {
        type = jsonValue;
        generate = generated;
      };
    toml =
      { }:
      {
        type = tomlValue;
        generate = generated;
      };
  };
  writeText = name: text: generated name text;
  writeScriptBin = name: text: generated name text;
  writeShellScript = name: text: generated name text;
}

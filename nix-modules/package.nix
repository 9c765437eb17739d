# The fediversity-providers package, nixpkgs style:
#
#   pkgs.python3Packages.callPackage ./package.nix { inherit (pkgs) nix openssh; }
#
# `fediversity-provider` gets `nix` and `ssh` on its PATH: nixos_config runs
# `nix copy --to ssh-ng://...` and existing_vm/nixos_config reach machines
# over SSH.  The version is the one in pyproject.toml.
{
  lib,
  buildPythonApplication,
  setuptools,
  attrs,
  cattrs,
  pluggy,
  jsonschema,
  filelock,
  fabric,
  minio,
  nix,
  openssh,
}:
let
  root = ../.;
  pyproject = builtins.fromTOML (builtins.readFile (root + "/pyproject.toml"));
in
buildPythonApplication {
  pname = "fediversity-providers";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build reads: editing tests, docs or these Nix files does not rebuild.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/pyproject.toml")
      (root + "/README.md")
      (root + "/src")
      (root + "/core")
      (root + "/providers")
      (root + "/schemas")
    ];
  };

  build-system = [ setuptools ];

  # pyproject.toml's [project] dependencies, one for one.
  dependencies = [
    attrs
    cattrs
    pluggy
    jsonschema
    filelock
    fabric
    minio
  ];

  makeWrapperArgs = [
    "--prefix"
    "PATH"
    ":"
    (lib.makeBinPath [
      nix
      openssh
    ])
  ];

  # The test suite needs root, network namespaces and sshd: it runs in the
  # project's CI, not in the Nix sandbox.
  doCheck = false;
  pythonImportsCheck = [
    "fediversity_providers"
    "fediversity_providers.providers.existing_vm"
    "fediversity_providers.providers.garage_bucket"
    "fediversity_providers.providers.nixos_config"
    "fediversity_providers.providers.proxmox_vm"
  ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.eupl12;
    mainProgram = "fediversity-provider";
    platforms = lib.platforms.linux;
  };
}

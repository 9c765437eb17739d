# The NixOps4 flake (nixops4/nixops4 at 53d855472af18d85457f327fa9aeb268543ff74e)
# as a deployment sees it, built from upstream's own nix/ in
# ../reference/nixops4 exactly as its flake.nix does:
#   lib                              = import ./nix/lib/lib.nix { inherit lib self; selfWithSystem = withSystem; }
#   modules.nixops4Component.default = ./nix/component/base-modules.nix
#   modules.nixops4Provider.local    = importApply ./nix/providers/local.nix { inherit withSystem; }
# Only the packages are stand-ins (flake-parts' `withSystem` hands them out):
# the local provider's executable, and the nixpkgs functions that
# renderProviderDocs builds its pages with.
{ lib, pkgs }:
let
  upstream = ../reference/nixops4;

  # Upstream's render-provider-docs/package.nix, called with stand-ins for
  # nixosOptionsDoc, runCommand and writeText whose "outputs" are their
  # contents, so a test can read the pages they would build.
  renderProviderDocs =
    { module }:
    import (upstream + "/nix/render-provider-docs/package.nix") {
      inherit lib self;
      providerModule = module;
      nixosOptionsDoc =
        { options, transformOptions }:
        let
          visible = lib.filter (o: o.visible && !o.internal) (lib.optionAttrSetToDocList options);
          docs = map transformOptions visible;
        in
        {
          optionsNix = lib.listToAttrs (map (o: lib.nameValuePair o.name o) docs);
          optionsCommonMark.overrideAttrs =
            _: "<options: ${lib.concatMapStringsSep ", " (o: "${o.name} (${o.type})") docs}>";
        };
      runCommand = name: _env: script: "<${name}: ${script}>";
      writeText = name: text: "<${name}: ${text}>";
    };

  withSystem =
    system: f:
    f {
      inherit system pkgs;
      config = {
        packages.nixops4-resources-local-release = pkgs.storePath "nixops4-resources-local" system;
        builders = { inherit renderProviderDocs; };
      };
    };

  self = {
    # A string, not the path: nothing is copied to the store.
    outPath = "/nix/store/00000000000000000000000000000000-source";
    lib = import (upstream + "/nix/lib/lib.nix") {
      inherit lib self;
      selfWithSystem = withSystem;
    };
    modules.nixops4Component.default = upstream + "/nix/component/base-modules.nix";
    # flake-parts' importApply: the applied module, located in its file.
    modules.nixops4Provider.local = lib.setDefaultModuleLocation (upstream + "/nix/providers/local.nix") (
      import (upstream + "/nix/providers/local.nix") { inherit withSystem; }
    );
  };
in
self

# The April MVP as a NixOps4 root: four pre-deployed VMs (one Garage node, one
# each for Mastodon, PeerTube and Pixelfed), the buckets the services need,
# and a NixOS configuration deployed onto every VM, in one `nixops4 apply`.
#
# This file is a function of what comes from outside (flake.nix passes it):
#   providerModules  { fediversity, local }: the NixOps4 provider modules
#   nixos            name -> [ module ] -> toplevel store path of that machine's system
#   bucketSettings   fediversity-providers' lib.bucketSettings
# and returns the root module.  It uses builtins only.
{
  providerModules,
  nixos,
  bucketSettings,
}:
# `providers` and `members` are NixOps4's module arguments: the resource types
# of the providers declared below, and the members with their outputs.
{ members, providers, ... }:
let
  # Edit these: the machines as they are, before any deployment.  The host keys
  # below are placeholders (well-formed, but no machine has them): put each
  # VM's own /etc/ssh/ssh_host_ed25519_key.pub line.
  machines = {
    garage = {
      host = "192.0.2.10";
      hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";
    };
    mastodon = {
      host = "192.0.2.11";
      hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC";
    };
    peertube = {
      host = "192.0.2.12";
      hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD";
    };
    pixelfed = {
      host = "192.0.2.13";
      hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    };
  };
  services = [
    "mastodon"
    "peertube"
    "pixelfed"
  ];

  # On the deployer (where NixOps4 runs the providers), in a directory only
  # its owner can read (mode 0700); never in the Nix store, never in this
  # flake's directory (which Nix copies to the store when it evaluates it).
  deployerDir = "/var/lib/fediversity/deployer";
  deployerSshKey = "${deployerDir}/id_ed25519";
  # NixOps4's state: it holds the buckets' secret access keys, as Terraform
  # state holds secrets.  Mode 0600 (see docs/nix.md).
  stateFile = "${deployerDir}/mvp-state.json";
  # Secrets made once on the deployer (docs/nix.md) and uploaded as keys.
  secret = name: "${deployerDir}/secrets/${name}";

  # Buckets are served to browsers at <alias><webRootDomain> (a wildcard DNS
  # record for it points at the Garage node).
  webRootDomain = ".web.example.org";
  garage = machines.garage.host;

  each = names: f: builtins.listToAttrs (map f names);
  machineNames = builtins.attrNames machines;

  # A secret for a machine, uploaded by nixos_config before activation.
  keyFrom = path: owner: {
    keyFile = path;
    user = owner;
    group = owner;
  };
  # The Garage node's own secrets, read by Garage itself (owner garage, mode 0400).
  garageKeys = {
    garage-rpc-secret = keyFrom (secret "garage-rpc-secret") "garage";
    garage-admin-token = keyFrom (secret "garage-admin-token") "garage";
    garage-metrics-token = keyFrom (secret "garage-metrics-token") "garage";
  };
  # Each service's bucket secret, from its bucket's outputs, and its own secrets file.
  serviceKeys =
    service:
    {
      "${service}-s3".text = members."${service}-media".outputs.keys.${service}.secretAccessKey;
    }
    // (
      if service == "peertube" then
        { peertube-secrets = keyFrom (secret "peertube-secrets") "peertube"; }
      else if service == "pixelfed" then
        { pixelfed-env = keyFrom (secret "pixelfed-env") "pixelfed"; }
      else
        { }
    );

  s3Settings =
    service:
    bucketSettings members."${service}-media".outputs service
    // {
      enable = true;
      secretAccessKeyFile = "/run/keys/${service}-s3";
    }
    // (
      if service == "peertube" then { privateBucket = members.peertube-private.outputs.globalAlias; } else { }
    );

  bucket = alias: extra: {
    type = providers.fediversity.garage_bucket;
    state = members.state;
    inputs = {
      # The admin API listens on the node's 127.0.0.1 only: garage_bucket
      # reaches it through an SSH tunnel over the node's pinned connection.
      # Forcing the node's deployment first: Garage must be up.
      adminEndpoint = builtins.seq members.garage-config.outputs.toplevel "http://127.0.0.1:3903";
      ssh = members.garage-vm.outputs.ssh;
      adminTokenFile = secret "garage-admin-token";
      s3Endpoint = "http://${garage}:3900";
      region = "garage";
      globalAlias = alias;
    } // extra;
  };
in
{
  providers.fediversity = providerModules.fediversity;
  providers.local = providerModules.local;

  members =
    {
      # garage_bucket needs its state kept: in a state file on the deployer.
      state = {
        type = providers.local.state_file;
        inputs.name = stateFile;
      };

      # PeerTube's user exports and original video files: a bucket without
      # website access, so browsers cannot fetch them; PeerTube's key may use it.
      peertube-private = bucket "peertube-private" {
        keys = [
          {
            name = "peertube";
            accessKeyId = members.peertube-media.outputs.keys.peertube.accessKeyId;
            read = true;
            write = true;
          }
        ];
      };
    }

    # 1. The VMs exist already: check that each is reachable with the expected host key.
    // each machineNames (name: {
      name = "${name}-vm";
      value = {
        type = providers.fediversity.existing_vm;
        inputs = {
          ssh = machines.${name} // {
            privateKeyFile = deployerSshKey;
          };
          expect.nixos = true;
        };
      };
    })

    # 2. Their NixOS configurations, with their keys.  A service machine's
    #    configuration and keys come from its bucket's outputs, so it is
    #    deployed after its bucket exists; the Garage node's come first.
    // each machineNames (name: {
      name = "${name}-config";
      value = {
        type = providers.fediversity.nixos_config;
        inputs = {
          ssh = members."${name}-vm".outputs.ssh;
          toplevel = nixos name (
            if name == "garage" then [ { fediversity.garageNode = { inherit webRootDomain; }; } ] else [ { fediversity.s3Client.${name} = s3Settings name; } ]
          );
          keys = if name == "garage" then garageKeys else serviceKeys name;
        };
      };
    })

    # 3. A bucket per service on the Garage node, served to browsers through
    #    Garage's web endpoint, with a read-write key for the service.
    // each services (service: {
      name = "${service}-media";
      value = bucket "${service}-media" {
        website = {
          enable = true;
          rootDomain = webRootDomain;
        };
        keys = [
          {
            name = service;
            read = true;
            write = true;
          }
        ];
      };
    });
}

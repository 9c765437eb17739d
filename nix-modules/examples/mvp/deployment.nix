# The April MVP as a NixOps4 deployment: four pre-deployed VMs (one Garage
# node, one each for Mastodon, PeerTube and Pixelfed), a Garage bucket per
# service, and a NixOS configuration deployed onto every VM.
#
# This file is a function of what comes from outside (flake.nix passes it):
#   providerModules  { fediversity, local }: the NixOps4 provider modules
#   nixos      name -> [ module ] -> toplevel store path of that machine's system
#   bucketSettings  fediversity-providers' lib.bucketSettings
# and returns the deployment module.  It uses builtins only.
{
  providerModules,
  nixos,
  bucketSettings,
}:
# `providers` is NixOps4's module argument: the resource types of the providers declared below.
{ config, providers, ... }:
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

  # On the deployer (where NixOps4 runs the providers); never in the store.
  deployerSshKey = "/var/lib/fediversity/deployer/id_ed25519";
  garageAdminTokenFile = "/var/lib/fediversity/deployer/garage-admin-token";
  # On the service machines, put there from the bucket's secretAccessKey output (see docs/nix.md).
  secretOnMachine = service: "/var/lib/secrets/${service}-s3";

  garage = machines.garage.host;
  res = config.resources;

  each = names: f: builtins.listToAttrs (map (name: f name) names);
  machineNames = builtins.attrNames machines;
in
{
  providers.fediversity = providerModules.fediversity;
  providers.local = providerModules.local;

  resources =
    {
      # garage_bucket needs its state kept: in a state file next to the deployment.
      state = {
        type = providers.local.state_file;
        inputs.name = "mvp-state.json";
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

    # 2. Their NixOS configurations.  The service machines' configurations use
    #    their bucket's outputs, so each is deployed after its bucket exists.
    // each machineNames (name: {
      name = "${name}-config";
      value = {
        type = providers.fediversity.nixos_config;
        inputs = {
          ssh = res."${name}-vm".outputs.ssh;
          toplevel = nixos name (
            if name == "garage" then
              [ ]
            else
              [
                {
                  fediversity.s3Client.${name} = bucketSettings res."${name}-media".outputs name // {
                    enable = true;
                    secretAccessKeyFile = secretOnMachine name;
                  };
                }
              ]
          );
        };
      };
    })

    # 3. A bucket per service on the Garage node, with a read-write key for the service.
    // each services (service: {
      name = "${service}-media";
      value = {
        type = providers.fediversity.garage_bucket;
        state = "state";
        inputs = {
          # Forcing the Garage node's deployment first: the admin API must be up.
          adminEndpoint = builtins.seq res.garage-config.outputs.toplevel "http://${garage}:3903";
          adminTokenFile = garageAdminTokenFile;
          s3Endpoint = "http://${garage}:3900";
          region = "garage";
          globalAlias = "${service}-media";
          keys = [
            {
              name = service;
              read = true;
              write = true;
            }
          ];
        };
      };
    });
}

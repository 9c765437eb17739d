# A resilient variant of the April MVP as a NixOps4 root: three Garage nodes
# in three zones, laid out as one cluster by garage_cluster (each object
# stored three times, once per zone), the services' buckets on that cluster,
# and the MVP's three service machines using them, in one `nixops4 apply`.
#
# A function of what comes from outside (flake.nix passes it), as the MVP's:
#   providerModules  { fediversity, local }: the NixOps4 provider modules
#   nixos            name -> [ module ] -> toplevel store path of that machine's system
#   bucketSettings   fediversity-providers' lib.bucketSettings
# It uses builtins only.
{
  providerModules,
  nixos,
  bucketSettings,
}:
{ members, providers, ... }:
let
  nodes = import ./nodes.nix; # the Garage nodes: host, zone, host key
  services = {
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
  machines = builtins.mapAttrs (_: n: { inherit (n) host hostPublicKey; }) nodes // services;
  nodeNames = builtins.attrNames nodes; # garage1, garage2, garage3
  serviceNames = builtins.attrNames services;

  # On the deployer, mode 0700, outside this flake's directory (see the MVP).
  deployerDir = "/var/lib/fediversity/deployer";
  deployerSshKey = "${deployerDir}/id_ed25519";
  # NixOps4's state holds the buckets' secret access keys: mode 0600.
  stateFile = "${deployerDir}/cluster-state.json";
  secret = name: "${deployerDir}/secrets/${name}";

  webRootDomain = ".web.example.org";
  # The node the services' S3 clients and the admin API requests go to; any
  # node serves every bucket (Garage forwards to the nodes that hold the data).
  first = builtins.head nodeNames;

  each = names: f: builtins.listToAttrs (map f names);
  keyFrom = path: owner: {
    keyFile = path;
    user = owner;
    group = owner;
  };
  # Every node gets the same three secrets: one rpc_secret for the whole
  # cluster (nodes with different secrets cannot connect), one admin token.
  # Garage reads them itself and wants them owned by `garage`, mode 0400. On
  # a fresh VM that user exists only once the node's system is activated:
  # nixos_config uploads them owned by root before the activation, and the
  # activation gives them to `garage` right after creating it, before Garage
  # starts (fediversity.keyOwners, set by garage-node.nix).
  garageKeys = {
    garage-rpc-secret = keyFrom (secret "garage-rpc-secret") "garage";
    garage-admin-token = keyFrom (secret "garage-admin-token") "garage";
    garage-metrics-token = keyFrom (secret "garage-metrics-token") "garage";
  };
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

  # Every node's configuration is deployed, and its keys uploaded (so Garage
  # is starting), before the cluster is laid out.
  allNodesDeployed = builtins.foldl' (acc: n: builtins.seq members."${n}-config".outputs.toplevel acc) true nodeNames;
  # The admin API listens on each node's 127.0.0.1 only: reached through an
  # SSH tunnel over that node's pinned connection.
  adminApi = "http://127.0.0.1:3903";

  bucket = alias: extra: {
    type = providers.fediversity.garage_bucket;
    state = members.state;
    inputs = {
      # Buckets wait for the layout: a cluster without one stores nothing.
      adminEndpoint = builtins.seq members.garage.outputs.layoutVersion adminApi;
      ssh = members."${first}-vm".outputs.ssh;
      adminTokenFile = secret "garage-admin-token";
      s3Endpoint = "http://${nodes.${first}.host}:3900";
      region = "garage";
      globalAlias = alias;
    } // extra;
  };

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
in
{
  providers.fediversity = providerModules.fediversity;
  providers.local = providerModules.local;

  members =
    {
      state = {
        type = providers.local.state_file;
        inputs.name = stateFile;
      };

      # 3. The cluster's layout: each node in its zone with its capacity,
      #    applied as one layout version, waited on until healthy.
      garage = {
        type = providers.fediversity.garage_cluster;
        state = members.state;
        inputs = {
          adminEndpoint = builtins.seq allNodesDeployed adminApi;
          ssh = members."${first}-vm".outputs.ssh;
          adminTokenFile = secret "garage-admin-token";
          replicationFactor = 3;
          nodes = map (name: {
            # The node is found by its machine; a node the cluster does not
            # know yet is asked its id at its own admin API, through its tunnel.
            ssh = members."${name}-vm".outputs.ssh;
            adminEndpoint = adminApi;
            inherit (nodes.${name}) zone;
            capacity = 100000000000; # 100 GB
            tags = [ name ];
          }) nodeNames;
        };
      };

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

    # 1. The VMs exist already: each reachable with its expected host key.
    // each (builtins.attrNames machines) (name: {
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

    # 2. The Garage nodes' NixOS configurations, with the cluster's secrets.
    // each nodeNames (name: {
      name = "${name}-config";
      value = {
        type = providers.fediversity.nixos_config;
        inputs = {
          ssh = members."${name}-vm".outputs.ssh;
          toplevel = nixos name [ { fediversity.garageNode = { inherit webRootDomain; }; } ];
          keys = garageKeys;
        };
      };
    })

    # 4. A bucket per service on the cluster, served to browsers.
    // each serviceNames (service: {
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
    })

    # 5. The service machines, with their bucket's settings and secret.
    // each serviceNames (service: {
      name = "${service}-config";
      value = {
        type = providers.fediversity.nixos_config;
        inputs = {
          ssh = members."${service}-vm".outputs.ssh;
          toplevel = nixos service [ { fediversity.s3Client.${service} = s3Settings service; } ];
          keys = serviceKeys service;
        };
      };
    });
}

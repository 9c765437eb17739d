# Helpers for deployments; plain Nix, no nixpkgs needed.
{
  /**
    The `fediversity.s3Client.<service>` settings for a bucket, from the outputs
    of a garage_bucket resource and the name of one of its `keys` entries.
    The secret access key is not among them: give `secretAccessKeyFile` (a
    file on the machine, e.g. a nixos_config key).  `publicUrl` is the bucket's
    website endpoint (null without website access and a `website.rootDomain`).

      fediversity.s3Client.mastodon =
        fediversity-providers.lib.bucketSettings members.mastodon-media.outputs "mastodon"
        // { enable = true; secretAccessKeyFile = "/run/keys/mastodon-s3"; };
  */
  bucketSettings =
    outputs: keyName:
    let
      key =
        outputs.keys.${keyName}
          or (throw "bucketSettings: the bucket has no key entry '${keyName}'; it has: ${toString (builtins.attrNames outputs.keys)}");
    in
    {
      endpoint = outputs.s3Endpoint;
      region = outputs.region;
      bucket = outputs.globalAlias;
      accessKeyId = key.accessKeyId;
      publicUrl = outputs.websiteEndpoint or null;
    };
}

# The Garage nodes of the cluster example: where each machine is and which
# zone (failure domain: a site, a building) it stands in.  Three nodes in
# three zones, so that each object's three copies are in three zones.
# Edit these; the host keys are placeholders (well-formed, but no machine has
# them): put each VM's own /etc/ssh/ssh_host_ed25519_key.pub line.
{
  garage1 = {
    host = "192.0.2.21";
    zone = "amsterdam";
    hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsL";
  };
  garage2 = {
    host = "192.0.2.22";
    zone = "berlin";
    hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM";
  };
  garage3 = {
    host = "192.0.2.23";
    zone = "copenhagen";
    hostPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0N";
  };
}

# The four machines of every VM test: the data nodes, the witness and the
# client (node.nix, client.nix).
let
  node = import ./node.nix;
in
{
  node1 = node 1;
  node2 = node 2;
  witness = node 3;
  client = import ./client.nix;
}

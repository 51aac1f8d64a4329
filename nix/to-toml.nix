# Renders a Nix attribute set as TOML text, with builtins only.
#
# Why not pkgs.formats.toml: that one converts at build time (a derivation
# running a converter), so the rendered file cannot be read during
# evaluation, and the project's tests (which have nix-instantiate but no
# nixpkgs) could not render the example cluster and give it to
# `duetctl check-config`. This renderer is a function of the value alone.
#
# Rules: null values are left out (an unset optional option); an attribute
# set becomes a [table], a list of attribute sets an [[array.of.tables]],
# both after the plain keys of their parent (TOML requires that order),
# except that a table of plain values below the top level is inline;
# anything nested inside a list is written inline. Lists keep their order
# (duet's [[link]] order matters); attribute names come out sorted.
let
  inherit (builtins)
    all
    attrNames
    concatStringsSep
    filter
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isPath
    isString
    map
    match
    replaceStrings
    toJSON
    typeOf
    ;

  # JSON's string escapes are TOML's basic-string escapes for everything
  # Nix strings can hold (\" \\ \n \r \t \uXXXX), so toJSON quotes a string.
  string = s: toJSON s;

  key = k: if match "[A-Za-z0-9_-]+" k != null then k else string k;

  path = ks: concatStringsSep "." (map key ks);

  isTableList = v: isList v && v != [ ] && all isAttrs v;

  # A table of plain values below the top level, such as a node's
  # `address`, reads best inline, as duet's docs write it.
  isFlat = v: isAttrs v && all (k: !(isAttrs v.${k}) && !(isList v.${k})) (attrNames v);

  present = set: filter (k: set.${k} != null) (attrNames set);

  inline =
    v:
    if isBool v then
      (if v then "true" else "false")
    else if isInt v || isFloat v then
      toJSON v
    else if isString v || isPath v then
      string (toString v)
    else if isList v then
      "[" + concatStringsSep ", " (map inline (filter (x: x != null) v)) + "]"
    else if isAttrs v then
      "{ " + concatStringsSep ", " (map (k: "${key k} = ${inline v.${k}}") (present v)) + " }"
    else
      throw "to-toml: a ${typeOf v} cannot be written as TOML";

  # The body of the table at `at` (a list of keys): its plain keys, then
  # its sub-tables, then its arrays of tables.
  table =
    at: set:
    let
      keys = present set;
      inlined = v: at != [ ] && isFlat v;
      plain = filter (k: inlined set.${k} || !(isAttrs set.${k}) && !(isTableList set.${k})) keys;
      tables = filter (k: isAttrs set.${k} && !(inlined set.${k})) keys;
      arrays = filter (k: isTableList set.${k}) keys;
      line = k: "${key k} = ${inline set.${k}}\n";
      sub = k: "\n[${path (at ++ [ k ])}]\n" + table (at ++ [ k ]) set.${k};
      array =
        k:
        concatStringsSep "" (
          map (elem: "\n[[${path (at ++ [ k ])}]]\n" + table (at ++ [ k ]) elem) set.${k}
        );
    in
    concatStringsSep "" (map line plain ++ map sub tables ++ map array arrays);
in
set:
if isAttrs set then
  table [ ] set
else
  throw "to-toml: the top level must be an attribute set, not a ${typeOf set}"

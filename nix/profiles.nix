# The machines of a profiles folder, for flake.nix: every *.toml in it that
# is not a fragment (`fragment = true` in its [profile]: a part that other
# profiles import, like hardened.toml), as file stem -> path. A new profile
# needs no flake change. tests/flake.rs holds this to hardroot's own
# reading of the tree (the one `hardroot image profiles/*.toml` skips by).
dir:
let
  entries = builtins.readDir dir;
  isToml = f: entries.${f} == "regular" && builtins.match ".*\\.toml" f != null;
  isFragment = f:
    ((builtins.fromTOML (builtins.readFile (dir + "/${f}"))).profile or { }).fragment or false;
  machines = builtins.filter (f: isToml f && !isFragment f) (builtins.attrNames entries);
  stem = f: builtins.substring 0 (builtins.stringLength f - 5) f;
in
builtins.listToAttrs (map (f: { name = stem f; value = dir + "/${f}"; }) machines)

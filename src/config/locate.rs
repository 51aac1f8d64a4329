//! Where in the file a key is, and which key a position is in.
//!
//! serde forgets positions once a value is deserialized, so validation
//! errors carry a key path and are placed afterwards by looking the path up
//! in a toml_edit parse of the same text (toml_edit keeps spans). serde's
//! own errors come with a byte span instead; for those we go the other way,
//! from the span to the key path.

use std::fmt;
use std::ops::Range;

use toml_edit::{Document, Item, Table, Value};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `node[1].address.public`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A span-carrying parse of the config text.
pub struct Locator<'a> {
    /// `None` when the text is not valid TOML; then every key falls back to
    /// line 1 (the syntax error itself carries its own span).
    doc: Option<Document<&'a str>>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    text: &'a str,
}

/// A key or table header found in the document, for span -> path lookups.
struct Anchor {
    path: KeyPath,
    range: Range<usize>,
    /// A `[table]` or `[[table]]` header: it encloses the lines below it.
    header: bool,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            doc: Document::parse(text).ok(),
            line_starts,
            text,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }

    /// Whether the text parsed as TOML; if not, key lookups fall back to
    /// line 1 and `path_at` to `table_before`.
    pub fn is_valid_toml(&self) -> bool {
        self.doc.is_some()
    }

    /// The table whose header is the last one before `offset`, read from
    /// the raw lines: for text that is not valid TOML, where there is no
    /// parse to ask. `[[node]]` headers are counted to give `node[N]`, and
    /// `[[group.resource]]` ones per group, as TOML nests them: into the
    /// last `[[group]]` above, giving `group[N].resource[M]`.
    pub fn table_before(&self, offset: usize) -> KeyPath {
        let before = self
            .text
            .get(..offset.min(self.text.len()))
            .unwrap_or(self.text);
        // Array of tables (its path with the indexes of the arrays it is
        // in) -> index of its last element so far.
        let mut last: Vec<(KeyPath, usize)> = Vec::new();
        let mut current = KeyPath::root();
        for line in before.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
                let array = nested(name, &last);
                let index = match last.iter_mut().find(|(a, _)| *a == array) {
                    Some((_, index)) => {
                        *index += 1;
                        *index
                    }
                    None => {
                        last.push((array.clone(), 0));
                        0
                    }
                };
                current = array.index(index);
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                current = nested(name, &last);
            }
        }
        current
    }

    /// Byte offset of the key at `path`; if it is not written in the file
    /// (a missing key), the nearest enclosing key or table that is; else 0.
    pub fn offset_of(&self, path: &KeyPath) -> usize {
        let Some(doc) = &self.doc else {
            return 0;
        };
        let mut best = 0;
        let mut at = Node::Item(doc.as_item());
        for segment in path.segments() {
            let next = match (segment, at) {
                (Segment::Key(key), Node::Item(Item::Table(table))) => table
                    .get_key_value(key)
                    .map(|(k, item)| (k.span(), Node::Item(item))),
                (Segment::Key(key), Node::Item(Item::Value(Value::InlineTable(table))))
                | (Segment::Key(key), Node::Value(Value::InlineTable(table))) => table
                    .get_key_value(key)
                    .map(|(k, item)| (k.span(), Node::Item(item))),
                (Segment::Index(i), Node::Item(Item::ArrayOfTables(tables))) => {
                    tables.get(*i).map(|t| (t.span(), Node::Table(t)))
                }
                (Segment::Key(key), Node::Table(table)) => table
                    .get_key_value(key)
                    .map(|(k, item)| (k.span(), Node::Item(item))),
                (Segment::Index(i), Node::Item(Item::Value(Value::Array(array))))
                | (Segment::Index(i), Node::Value(Value::Array(array))) => {
                    array.get(*i).map(|v| (v.span(), Node::Value(v)))
                }
                _ => None,
            };
            let Some((span, node)) = next else {
                break;
            };
            // Implicit tables (`[a.b]` without `[a]`) have no span of their
            // own; keep the last real position and go on down.
            if let Some(span) = span {
                best = span.start;
            }
            at = node;
        }
        best
    }

    /// The key path of the innermost key whose `key = value` contains
    /// `offset`, else of the table whose header is the last one before it.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        let Some(doc) = &self.doc else {
            return KeyPath::root();
        };
        let mut anchors = Vec::new();
        collect_table(doc.as_table(), &KeyPath::root(), &mut anchors);
        let innermost = anchors
            .iter()
            .filter(|a| a.range.contains(&offset) || a.range.start == offset)
            .min_by_key(|a| (a.range.len(), std::cmp::Reverse(a.path.segments().len())));
        if let Some(anchor) = innermost {
            return anchor.path.clone();
        }
        anchors
            .iter()
            .filter(|a| a.header && a.range.start <= offset)
            .max_by_key(|a| a.range.start)
            .map(|a| a.path.clone())
            .unwrap_or_default()
    }
}

/// The path of header `name` (`a.b.c`), each of its parts that is an array
/// of tables seen so far taken at its last element, as TOML does.
fn nested(name: &str, last: &[(KeyPath, usize)]) -> KeyPath {
    let keys: Vec<&str> = name
        .split('.')
        .map(|k| k.trim().trim_matches('"'))
        .collect();
    let mut path = KeyPath::root();
    for (i, key) in keys.iter().enumerate() {
        path = path.key(key);
        if i + 1 < keys.len()
            && let Some((_, index)) = last.iter().find(|(a, _)| *a == path)
        {
            path = path.index(*index);
        }
    }
    path
}

#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Value(&'d Value),
    Table(&'d Table),
}

fn collect_table(table: &Table, path: &KeyPath, out: &mut Vec<Anchor>) {
    for (key, item) in table.iter() {
        let here = path.key(key);
        let key_span = table.key(key).and_then(|k| k.span());
        match item {
            Item::Table(inner) => {
                if let Some(span) = inner.span() {
                    out.push(Anchor {
                        path: here.clone(),
                        range: span,
                        header: true,
                    });
                }
                collect_table(inner, &here, out);
            }
            Item::ArrayOfTables(tables) => {
                for (i, inner) in tables.iter().enumerate() {
                    let element = here.index(i);
                    if let Some(span) = inner.span() {
                        out.push(Anchor {
                            path: element.clone(),
                            range: span,
                            header: true,
                        });
                    }
                    collect_table(inner, &element, out);
                }
            }
            Item::Value(value) => {
                if let (Some(k), Some(v)) = (key_span, value.span()) {
                    out.push(Anchor {
                        path: here.clone(),
                        range: k.start..v.end.max(k.end),
                        header: false,
                    });
                }
                collect_value(value, &here, out);
            }
            Item::None => {}
        }
    }
}

fn collect_value(value: &Value, path: &KeyPath, out: &mut Vec<Anchor>) {
    match value {
        Value::InlineTable(table) => {
            for (key, inner) in table.iter() {
                let here = path.key(key);
                let key_span = table.key(key).and_then(|k| k.span());
                if let (Some(k), Some(v)) = (key_span, inner.span()) {
                    out.push(Anchor {
                        path: here.clone(),
                        range: k.start..v.end.max(k.end),
                        header: false,
                    });
                }
                collect_value(inner, &here, out);
            }
        }
        Value::Array(array) => {
            for (i, inner) in array.iter().enumerate() {
                let here = path.index(i);
                if let Some(span) = inner.span() {
                    out.push(Anchor {
                        path: here.clone(),
                        range: span,
                        header: false,
                    });
                }
                collect_value(inner, &here, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[cluster]
name = \"web\"

[[node]]
name = \"a\"

[[node]]
name = \"b\"
address = { public = \"198.51.100.1\" }

[ping]
nodes = [\"1.2.3.4\", \"5.6.7.8\"]
";

    fn line_of(loc: &Locator, path: &KeyPath) -> (usize, usize) {
        loc.line_col(loc.offset_of(path))
    }

    #[test]
    fn key_paths_display_dotted_with_indexes() {
        let p = KeyPath::root()
            .key("node")
            .index(1)
            .key("address")
            .key("public");
        assert_eq!(p.to_string(), "node[1].address.public");
        assert_eq!(KeyPath::root().to_string(), "");
    }

    #[test]
    fn finds_keys_in_tables_arrays_and_inline_tables() {
        let loc = Locator::new(TEXT);
        let root = KeyPath::root();
        assert_eq!(line_of(&loc, &root.key("cluster").key("name")), (2, 1));
        assert_eq!(
            line_of(&loc, &root.key("node").index(1).key("name")),
            (8, 1)
        );
        assert_eq!(
            line_of(
                &loc,
                &root.key("node").index(1).key("address").key("public")
            ),
            (9, 13)
        );
        assert_eq!(
            line_of(&loc, &root.key("ping").key("nodes").index(1)),
            (12, 21)
        );
    }

    #[test]
    fn a_missing_key_falls_back_to_its_table_then_line_one() {
        let loc = Locator::new(TEXT);
        let root = KeyPath::root();
        assert_eq!(
            line_of(&loc, &root.key("node").index(0).key("votes")),
            (4, 1)
        );
        assert_eq!(line_of(&loc, &root.key("timings").key("deadtime")), (1, 1));
        assert_eq!(line_of(&Locator::new("[bad"), &root.key("cluster")), (1, 1));
    }

    #[test]
    fn maps_an_offset_back_to_its_key() {
        let loc = Locator::new(TEXT);
        let at = |needle: &str| loc.path_at(TEXT.find(needle).unwrap_or(0)).to_string();
        assert_eq!(at("\"web\""), "cluster.name");
        assert_eq!(at("\"198.51.100.1\""), "node[1].address.public");
        assert_eq!(at("\"5.6.7.8\""), "ping.nodes[1]");
        // A blank line inside a table belongs to that table.
        assert_eq!(
            loc.path_at(TEXT.find("\n\n[[node]]\nname = \"b\"").unwrap_or(0) + 1)
                .to_string(),
            "node[0]"
        );
    }

    #[test]
    fn broken_text_is_placed_by_its_table_headers() {
        let text = "[cluster]\nname = \"x\"\n[[node]]\n[[node]]\nname = \"oops\n[ping]\n";
        let loc = Locator::new(text);
        assert!(!loc.is_valid_toml());
        let at = |needle: &str| loc.table_before(text.find(needle).unwrap_or(0)).to_string();
        assert_eq!(at("name = \"x\""), "cluster");
        assert_eq!(at("name = \"oops"), "node[1]");
        assert_eq!(at("\n[ping]"), "node[1]");
        assert_eq!(loc.table_before(0).to_string(), "");
    }

    #[test]
    fn nested_arrays_of_tables_are_counted_per_parent() {
        let text = "[[group]]\n[[group.resource]]\n[[group.resource]]\n[[group]]\n\
                    [[group.resource]]\nunit = \"oops\n[[replica]]\n[replica.resync]\nx = \"";
        let loc = Locator::new(text);
        assert!(!loc.is_valid_toml());
        let at = |needle: &str| loc.table_before(text.find(needle).unwrap_or(0)).to_string();
        assert_eq!(at("unit = "), "group[1].resource[0]");
        assert_eq!(at("x = "), "replica[0].resync");
        let second = text
            .find("[[group]]\n[[group.resource]]\nunit")
            .unwrap_or(0);
        assert_eq!(loc.table_before(second).to_string(), "group[0].resource[1]");
    }

    #[test]
    fn line_and_column_count_characters_from_one() {
        let loc = Locator::new("ab\ncdé\nx");
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(3), (2, 1));
        assert_eq!(loc.line_col(7), (2, 4));
        assert_eq!(loc.line_col(8), (3, 1));
        assert_eq!(loc.line_col(100), (3, 2));
    }
}

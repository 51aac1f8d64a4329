use super::*;
use crate::testkit::mutations;

const FILE: &str = "/etc/ha.d/authkeys";

/// tests/classic/authkeys.
const SAMPLE: &str = "\
auth 2
1 crc
2 sha1 thisisasecretsha1key
3 md5 thisisasecretmd5key
";

fn ok(text: &str) -> AuthKeys {
    match parse(text, FILE, Some(0o600)) {
        Ok(keys) => keys,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors(text: &str) -> Vec<ImportError> {
    match parse(text, FILE, Some(0o600)) {
        Ok(keys) => panic!("expected an error, got {keys:#?}"),
        Err(errors) => errors,
    }
}

fn error_at(text: &str, line: usize, needle: &str) {
    let errors = errors(text);
    assert!(
        errors
            .iter()
            .any(|e| e.file == FILE && e.line == line && e.message.contains(needle)),
        "no error at line {line} saying {needle:?}: {errors:#?}"
    );
}

fn notes(keys: &AuthKeys) -> String {
    keys.notes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sample_file() {
    let keys = ok(SAMPLE);
    assert_eq!(keys.method, AuthMethod::Sha1);
    assert_eq!(keys.key, "thisisasecretsha1key");
    assert_eq!((keys.index, keys.line), (2, 3));
    assert_eq!(keys.notes.len(), 1, "{}", notes(&keys));
    let note = &keys.notes[0];
    assert_eq!(note.line, 1);
    assert!(
        note.message.contains("only key 2 is imported"),
        "{}",
        note.message
    );
    assert!(note.message.contains("key(s) 1, 3"), "{}", note.message);
}

#[test]
fn each_method() {
    let keys = ok("auth 1\n1 md5 k\n");
    assert_eq!((keys.method, keys.key.as_str()), (AuthMethod::Md5, "k"));
    assert!(keys.notes.is_empty());
    let keys = ok("auth 15\n15 sha1 s3cret!\n");
    assert_eq!((keys.method, keys.index), (AuthMethod::Sha1, 15));
    let keys = ok("auth 0\n0 crc\n");
    assert_eq!((keys.method, keys.key.as_str()), (AuthMethod::Crc, ""));
}

#[test]
fn crc_is_noted_as_insecure() {
    let keys = ok("auth 1\n1 crc\n");
    let n = notes(&keys);
    assert!(n.contains("authenticates nothing"), "{n}");
    assert!(n.contains("makes a new key"), "{n}");
    assert_eq!(keys.notes[0].line, 2);
}

#[test]
fn spacing_tabs_comments_and_crlf() {
    let keys = ok(
        "# keys\r\n\r\n  \t# indented comment\n\tauth\t3 # the new one\r\n \t3\tsha1\t  abc   \r\n",
    );
    assert_eq!((keys.index, keys.line, keys.key.as_str()), (3, 5, "abc"));
    assert!(keys.notes.is_empty(), "{}", notes(&keys));
    // "auth2" reads as "auth 2", as Heartbeat's sscanf does.
    assert_eq!(ok("auth2\n2 md5 k\n").index, 2);
}

#[test]
fn a_key_is_one_word_hash_and_all() {
    let keys = ok("auth 1\n1 sha1 pass#word # comment\n");
    assert_eq!(keys.key, "pass#word");
    assert!(keys.notes.is_empty(), "{}", notes(&keys));
    let keys = ok("auth 1\n1 sha1 two words\n");
    assert_eq!(keys.key, "two");
    assert!(notes(&keys).contains("only the first word"));
    let keys = ok("auth 1\n1 sha1 #hashed\n");
    assert_eq!(keys.key, "#hashed");
    assert!(notes(&keys).contains("starts with #"));
    // crc followed by a comment is no key.
    assert_eq!(ok("auth 1\n1 crc # insecure\n").key, "");
}

#[test]
fn no_message_quotes_a_key() {
    let text = "auth 1\n1 sha1 topsecret more words\n2 md5 topsecret2\n3 crc topsecret3\n";
    let all: Vec<String> = match parse(text, FILE, Some(0o644)) {
        Ok(keys) => keys.notes.iter().map(|n| n.to_string()).collect(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    };
    assert!(!all.is_empty());
    assert!(all.iter().all(|m| !m.contains("topsecret")), "{all:#?}");
    let keys = ok("auth 1\n1 sha1 topsecret more words\n2 md5 topsecret2\n");
    assert!(!notes(&keys).contains("topsecret"));
}

#[test]
fn file_mode() {
    for (mode, noted) in [
        (0o600, false),
        (0o400, false),
        (0o100600, false),
        (0o602, true),
        (0o620, true),
        (0o640, true),
        (0o604, true),
        (0o644, true),
        (0o100644, true),
    ] {
        let keys = match parse(SAMPLE, FILE, Some(mode)) {
            Ok(keys) => keys,
            Err(e) => panic!("{e:#?}"),
        };
        let n = notes(&keys);
        let said = n.contains("readable by others") || n.contains("writable by others");
        assert_eq!(said, noted, "{mode:o}: {n}");
    }
    let keys = match parse(SAMPLE, FILE, Some(0o644)) {
        Ok(keys) => keys,
        Err(e) => panic!("{e:#?}"),
    };
    assert!(notes(&keys).contains("(mode 0644): Heartbeat refuses that"));
    let writable = parse(SAMPLE, FILE, Some(0o602)).map(|k| notes(&k));
    assert!(
        writable.as_deref().is_ok_and(|n| n.contains(
            "writable by others (mode 0602): the key imported may be one they put there"
        )),
        "{writable:?}"
    );
    // Something to act on: printed as a warning, not among the notes.
    let readable = |n: &&crate::import::Note| n.message.contains("readable by others");
    assert!(keys.notes.iter().filter(readable).all(|n| n.warning));
    assert!(
        !keys
            .notes
            .iter()
            .filter(|n| !readable(n))
            .any(|n| n.warning)
    );
    assert!(notes(&keys).contains("gets mode 0600"));
    let unknown = match parse(SAMPLE, FILE, None) {
        Ok(keys) => keys,
        Err(e) => panic!("{e:#?}"),
    };
    assert!(!notes(&unknown).contains("readable"));
}

#[test]
fn missing_auth_line() {
    let errors = errors("1 sha1 k\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 0);
    assert!(errors[0].message.contains("no `auth N` line"));
    error_at("", 0, "no `auth N` line");
    error_at("# only comments\n", 0, "no `auth N` line");
}

#[test]
fn auth_naming_a_missing_key() {
    error_at(
        "auth 4\n1 crc\n2 md5 k\n",
        1,
        "auth 4 names no key: the keys are 1, 2",
    );
    error_at("\nauth 1\n", 2, "there are none");
}

#[test]
fn malformed_lines() {
    let cases = [
        ("auth 1\n1 sha256 k\n", 2, "unknown method `sha256`"),
        ("auth 1\n1 SHA1 k\n", 2, "unknown method `SHA1`"),
        ("auth 1\n1 sha1\n", 2, "need a key"),
        ("auth 1\n1 crc k\n", 2, "crc takes no key"),
        ("auth 1\n1\n", 2, "no method"),
        (
            "auth 1\n1 md5 a\n1 sha1 b\n",
            3,
            "key 1 is defined twice (first on line 2)",
        ),
        ("auth 1\n1 md5 a\n16 md5 b\n", 3, "0 to 15"),
        ("auth 1\n1 md5 a\n-1 md5 b\n", 3, "not a key line"),
        ("auth 1\n1 md5 a\nsha1 1 b\n", 3, "not a key line"),
        ("auth 1\n1 md5 a\nauthx\n", 3, "not an auth line"),
        ("auth 1\n1 md5 a\nabc\n", 3, "not an auth line"),
        ("auth\n1 md5 a\n", 1, "not an auth line"),
        ("auth 1\n1 md5 a\n99999999999 md5 b\n", 3, "not a key line"),
    ];
    for (text, line, needle) in cases {
        error_at(text, line, needle);
    }
}

#[test]
fn md5_with_a_hash_key_is_a_key_not_a_comment() {
    // Heartbeat reads the third word whatever it is.
    let keys = ok("auth 1\n1 md5 # comment\n");
    assert_eq!(keys.key, "#");
    assert!(notes(&keys).contains("starts with #"));
}

#[test]
fn the_last_auth_line_counts() {
    let keys = ok("auth 1\nauth 2\n1 md5 a\n2 sha1 b\n");
    assert_eq!(keys.index, 2);
    let n = notes(&keys);
    assert!(n.contains("also on line 1"), "{n}");
    assert!(n.contains("only key 2"), "{n}");
}

#[test]
fn all_errors_are_reported_at_once() {
    let errors = errors("auth 1\n1 md5\n2 foo x\nbogus\n");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4], "{errors:#?}");
}

/// Drops, doubles or swaps in a tricky character at random places of the
/// sample: the parser answers without panicking, with the file named.
#[test]
fn mutated_files_never_panic() {
    let base = format!("# keys\n{SAMPLE}\t4 md5 a#b c\n");
    let tricky = ['#', ' ', '\t', '\n', 'a', '9', '-', 'é', '\r', '\\'];
    for text in mutations(&base, &tricky, 0xa07b, 500) {
        let lines = text.lines().count();
        match parse(&text, FILE, Some(0o600)) {
            Ok(keys) => assert!(keys.line >= 1 && keys.line <= lines),
            Err(errors) => {
                for e in errors {
                    assert!(e.file == FILE && e.line <= lines, "{e} in {text:?}");
                }
            }
        }
    }
}

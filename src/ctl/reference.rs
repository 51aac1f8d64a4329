//! docs/cli.md, the command reference, generated from the same clap
//! definition as `--help`, the man page and the completions; a test
//! keeps the file in step (DUET_BLESS=1 rewrites it).

use std::fmt::Write;

use clap::{Arg, Command};

const HEADER: &str = "# duetctl command reference\n\n\
Generated from duetctl's command-line definition (`src/ctl/cli.rs`), the\n\
same text as `duetctl help COMMAND`, the man page (`duetctl man`) and the\n\
shell completions (`duetctl completions SHELL`); `src/ctl/reference.rs`\n\
keeps this file in step (`DUET_BLESS=1 cargo test --lib ctl::reference`\n\
rewrites it). Exit codes: 0 done, 1 failed or refused, 2 bad usage, 3 no\n\
daemon (duetd not running or the bus unreachable).\n";

/// The whole reference.
pub fn markdown(root: &Command) -> String {
    // Built, clap fills in what the definition leaves to it (how many
    // values each argument takes, their names).
    let mut root = root.clone();
    root.build();
    let root = &root;
    let mut out = String::from(HEADER);
    let _ = writeln!(out, "\n## Options of every command\n");
    options(&mut out, root, &[]);
    let inherited = globals(root);
    for sub in root.get_subcommands().filter(|c| listed(c)) {
        command(&mut out, sub, root.get_name(), &inherited);
    }
    out
}

/// The ids of the global arguments `cmd` declares or inherits: clap
/// repeats them in every subcommand, where they are documented once.
fn globals(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect()
}

fn command(out: &mut String, cmd: &Command, parent: &str, inherited: &[String]) {
    let path = format!("{parent} {}", cmd.get_name());
    let _ = writeln!(out, "\n## `{path}`\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", sentence(about.to_string().trim()));
    }
    let usage = cmd
        .clone()
        .bin_name(&path)
        .render_usage()
        .to_string()
        .replace("Usage: ", "");
    let _ = writeln!(out, "```\n{}\n```", usage.trim());
    if cmd.get_arguments().any(|a| shown(a, inherited)) {
        out.push('\n');
        options(out, cmd, inherited);
    }
    let inherited = globals(cmd);
    for sub in cmd.get_subcommands().filter(|c| listed(c)) {
        command(out, sub, &path, &inherited);
    }
}

/// clap's own `help` subcommand is `--help` again; hidden ones are
/// internal.
fn listed(c: &Command) -> bool {
    !c.is_hide_set() && c.get_name() != "help"
}

/// An argument a user sees: not hidden, not clap's own help and version,
/// not a global one documented with the command that declares it.
fn shown(a: &Arg, inherited: &[String]) -> bool {
    let id = a.get_id().as_str();
    !a.is_hide_set() && id != "help" && id != "version" && !inherited.iter().any(|g| g == id)
}

fn options(out: &mut String, cmd: &Command, inherited: &[String]) {
    let _ = writeln!(out, "| argument | meaning |\n|---|---|");
    for a in cmd.get_arguments().filter(|a| shown(a, inherited)) {
        let _ = writeln!(out, "| `{}` | {} |", name(a), meaning(a));
    }
}

fn name(a: &Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    match (a.get_long(), a.get_short()) {
        (None, None) => value,
        (long, short) => {
            let mut flags: Vec<String> = short.map(|s| format!("-{s}")).into_iter().collect();
            flags.extend(long.map(|l| format!("--{l}")));
            let flags = flags.join(", ");
            if takes_value {
                format!("{flags} {value}")
            } else {
                flags
            }
        }
    }
}

/// clap drops the full stop of a one-line help; the table puts it back.
fn sentence(text: &str) -> String {
    match text.chars().last() {
        None => String::new(),
        Some('.' | ':' | '!' | '?') => text.to_string(),
        Some(_) => format!("{text}."),
    }
}

fn meaning(a: &Arg) -> String {
    let help = a
        .get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut text = sentence(&help.split_whitespace().collect::<Vec<_>>().join(" "));
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !values.is_empty() && a.get_num_args().is_some_and(|n| n.takes_values()) {
        let _ = write!(text, " One of {}.", values.join(", "));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if defaults.iter().any(|d| !d.is_empty()) && a.get_num_args().is_some_and(|n| n.takes_values())
    {
        let _ = write!(text, " Default: `{}`.", defaults.join(" "));
    }
    if let Some(env) = a.get_env() {
        let _ = write!(text, " Environment: `{}`.", env.to_string_lossy());
    }
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::cli::Cli;
    use clap::CommandFactory;

    #[test]
    fn docs_cli_md_is_generated_from_the_definition() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
        let want = markdown(&Cli::command());
        if std::env::var_os("DUET_BLESS").is_some() {
            std::fs::write(path, &want).expect("write docs/cli.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/cli.md is out of date: run DUET_BLESS=1 cargo test --lib ctl::reference"
        );
    }

    /// Each command's own section has each of its arguments, with help.
    #[test]
    fn every_command_and_option_is_in_its_section() {
        let mut root = Cli::command();
        root.build();
        let text = markdown(&root);
        fn check(text: &str, cmd: &Command, path: &str, inherited: &[String]) {
            let path = format!("{path} {}", cmd.get_name());
            let head = format!("## `{path}`\n");
            let start = text
                .find(&head)
                .unwrap_or_else(|| panic!("no section {path}"));
            let rest = &text[start + head.len()..];
            let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
            for a in cmd.get_arguments().filter(|a| shown(a, inherited)) {
                assert!(
                    a.get_help().is_some(),
                    "{path} {} has no help text",
                    a.get_id()
                );
                let row = format!("| `{}` |", name(a));
                assert!(section.contains(&row), "{path}: no {row}");
            }
            let inherited = globals(cmd);
            for sub in cmd.get_subcommands().filter(|c| listed(c)) {
                check(text, sub, &path, &inherited);
            }
        }
        let inherited = globals(&root);
        for sub in root.get_subcommands().filter(|c| listed(c)) {
            check(&text, sub, "duetctl", &inherited);
        }
        assert!(
            text.contains("| `--timeout TIMEOUT` |"),
            "resource-op's global --timeout"
        );
    }
}

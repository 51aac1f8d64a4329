//! A classic resource script: heartbeat's resource.d and LSB init scripts
//! take their arguments, then the operation: `pageme 650-555-1212 start`.
//! Exit status 0 is success; for `status`, 0 means running (LSB's 3 is
//! "not running", anything else unknown).

use std::path::Path;
use std::process::Stdio;

use super::Op;

/// The most of a script's output that goes into an error message.
const OUTPUT_LIMIT: usize = 400;

pub async fn run(path: &Path, args: &[String], op: Op) -> Result<(), String> {
    let word = match op {
        Op::Start => "start",
        Op::Stop => "stop",
        Op::Monitor => "status",
    };
    let out = tokio::process::Command::new(path)
        .args(args)
        .arg(word)
        .stdin(Stdio::null())
        // A script that outlives its timeout is killed with its future.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let said = said(&out.stderr, &out.stdout);
    let how = match out.status.code() {
        Some(3) if op == Op::Monitor => "reports not running (exit 3)".to_string(),
        Some(code) => format!("exited with {code}"),
        None => "was killed by a signal".to_string(),
    };
    Err(format!(
        "{} {word} {how}{}",
        path.display(),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

/// The last words of what the script printed (stderr first), on one line.
pub(crate) fn said(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(text);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = line
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| line.len() - i <= OUTPUT_LIMIT)
        .unwrap_or(0);
    line[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(body: &str) -> (tempdir::Dir, std::path::PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("res");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        (dir, path)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "duet-script-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                std::fs::create_dir_all(&p).expect("temp dir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn the_arguments_come_first_then_the_operation() {
        let (dir, path) = script("echo \"$@\" >> \"$(dirname \"$0\")/calls\"; exit 0");
        let args = vec!["650-555-1212".to_string(), "two words".to_string()];
        let rt = rt();
        for op in [Op::Start, Op::Monitor, Op::Stop] {
            assert_eq!(rt.block_on(run(&path, &args, op)), Ok(()));
        }
        let calls = std::fs::read_to_string(dir.0.join("calls")).expect("calls");
        assert_eq!(
            calls,
            "650-555-1212 two words start\n650-555-1212 two words status\n650-555-1212 two words stop\n"
        );
    }

    #[test]
    fn a_failure_says_how_and_what_the_script_printed() {
        let (_dir, path) = script("echo 'pager gateway unreachable' >&2; exit 1");
        let err = rt().block_on(run(&path, &[], Op::Start));
        let want = format!(
            "{} start exited with 1: pager gateway unreachable",
            path.display()
        );
        assert_eq!(err, Err(want));
        let (_dir, path) = script("exit 3");
        let err = rt().block_on(run(&path, &[], Op::Monitor));
        assert_eq!(
            err,
            Err(format!(
                "{} status reports not running (exit 3)",
                path.display()
            ))
        );
        let err = rt().block_on(run(std::path::Path::new("/nonexistent/res"), &[], Op::Stop));
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("cannot run /nonexistent/res:")),
            "{err:?}"
        );
    }
}

//! `trainer models list | show | promote | prune`, driving the real binary against a local
//! store and against s3s-fs on loopback. Every test runs on both; each bad input's message
//! is checked, and so is that it changed nothing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use model::store::{ObjectStore, latest_key, list_versions, load, model_key, publish};
use model::{Artifact, FORMAT_VERSION, Scaler};
use serde_json::Value;
use storage::testing::S3Server;

const BIN: &str = env!("CARGO_BIN_EXE_trainer");

/// A store the verbs run against: where it is (for the command line), how to reach it
/// in-process, and the environment the binary needs.
struct Fixture {
    /// `<store>` as the command line names it.
    root: String,
    store: Box<dyn ObjectStore>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    /// The S3 server, kept running for the fixture's lifetime.
    server: Option<S3Server>,
}

impl Fixture {
    fn local() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("store");
        std::fs::create_dir_all(&root).expect("store dir");
        Self {
            root: root.display().to_string(),
            store: Box::new(model::store::LocalStore::new(&root)),
            env: Vec::new(),
            dir,
            server: None,
        }
    }

    fn s3() -> Self {
        let server = S3Server::start();
        Self {
            root: server.uri("models/team"),
            store: Box::new(server.store("models/team")),
            env: server.env(),
            dir: tempfile::tempdir().expect("tmp"),
            server: Some(server),
        }
    }

    /// True for the s3s-fs store.
    fn is_s3(&self) -> bool {
        self.server.is_some()
    }

    /// `<store>/<name>[/<version>]`.
    fn uri(&self, rest: &str) -> String {
        format!("{}/{rest}", self.root)
    }

    /// The binary with this store's environment and no TRAINER_* or AWS_* leaking in.
    fn trainer(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("TRAINER_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = run(self.trainer().args(args));
        assert!(
            o.status.success(),
            "trainer {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).expect("JSON output")
    }

    /// Run, expect failure (exit 1), return stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = run(self.trainer().args(args));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "trainer {args:?}: {err}");
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(err.starts_with("trainer: error: "), "{err}");
        err
    }

    /// Publish `n` versions of `name` (accuracies 0.90, 0.91, ...); names oldest first.
    fn publish(&self, name: &str, n: u32) -> Vec<String> {
        (0..n)
            .map(|i| {
                let v = publish(self.store.as_ref(), &artifact(name, i))
                    .expect("publish")
                    .version;
                std::thread::sleep(Duration::from_millis(3));
                v
            })
            .collect()
    }

    fn latest_bytes(&self, name: &str) -> Vec<u8> {
        self.store.get(&latest_key(name)).expect("latest")
    }

    fn latest(&self, name: &str) -> String {
        let (_, version) = load(self.store.as_ref(), name, None).expect("latest loads");
        version
    }
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run trainer")
}

/// A small valid binary model; `i` varies the weights and the recorded accuracy.
fn artifact(name: &str, i: u32) -> Artifact {
    let mut metrics = serde_json::Map::new();
    metrics.insert(
        "accuracy".into(),
        serde_json::json!(0.9 + f64::from(i) / 100.0),
    );
    let mut a = Artifact {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        name: name.to_string(),
        created_at: format!("2026-11-27T03:00:0{}.000Z", i % 10),
        classes: vec!["no".into(), "yes".into()],
        feature_names: vec!["x".into(), "y".into()],
        scaler: Scaler {
            mean: vec![0.5, -1.0],
            scale: vec![2.0, 1.0],
        },
        coefficients: vec![vec![1.0 + f64::from(i), -0.5]],
        intercepts: vec![0.25],
        training: serde_json::Map::new(),
        metrics,
        data_sha256: "ab".repeat(32),
    };
    a.seal();
    a
}

fn both(test: impl Fn(&Fixture)) {
    test(&Fixture::local());
    test(&Fixture::s3());
}

fn versions_of(listing: &Value) -> Vec<String> {
    listing["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|r| r["version"].as_str().expect("version").to_string())
        .collect()
}

#[test]
fn list_shows_versions_newest_first_and_marks_latest() {
    both(|f| {
        let v = f.publish("digits", 3);
        f.ok(&["models", "promote", &f.uri(&format!("digits/{}", v[1]))]);

        let j = f.json(&["models", "list", &f.uri("digits")]);
        assert_eq!(j["model"], f.uri("digits"));
        assert_eq!(j["latest"], v[1].as_str());
        assert_eq!(versions_of(&j), [v[2].clone(), v[1].clone(), v[0].clone()]);
        let rows = j["versions"].as_array().expect("rows");
        let marked: Vec<bool> = rows.iter().map(|r| r["latest"] == true).collect();
        assert_eq!(marked, [false, true, false]);
        assert_eq!(rows[0]["accuracy"], 0.92);
        assert_eq!(rows[0]["model_id"], artifact("digits", 2).model_id.as_str());
        assert_eq!(rows[0]["data_sha256"], "ab".repeat(32).as_str());
        assert_eq!(rows[0]["created_at"], "2026-11-27T03:00:02.000Z");

        let table = f.ok(&["models", "list", &f.uri("digits")]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("created_at") && lines[0].contains("accuracy"),
            "{table}"
        );
        assert!(lines[2].starts_with(&format!("* {}", v[1])), "{table}");
        assert!(lines[1].starts_with(&format!("  {}", v[2])), "{table}");
        let short_id: String = artifact("digits", 2).model_id.chars().take(12).collect();
        assert!(
            lines[1].contains(&short_id) && lines[1].contains("0.9200"),
            "{table}"
        );
        assert!(table.contains("3 versions of"), "{table}");
    });
}

#[test]
fn show_prints_metadata_and_metrics_of_latest_or_a_version() {
    both(|f| {
        let v = f.publish("digits", 2);
        let j = f.json(&["models", "show", &f.uri("digits")]);
        assert_eq!(j["version"], v[1].as_str());
        assert_eq!(j["latest"], true);
        assert_eq!(j["metrics"]["accuracy"], 0.91);
        assert_eq!(j["classes"], serde_json::json!(["no", "yes"]));
        assert!(j.get("coefficients").is_none(), "no weights: {j}");
        let j = f.json(&["models", "show", &f.uri(&format!("digits/{}", v[0]))]);
        assert_eq!(j["version"], v[0].as_str());
        assert_eq!(j["latest"], false);
        assert_eq!(j["model_id"], artifact("digits", 0).model_id.as_str());

        let text = f.ok(&["models", "show", &f.uri("digits")]);
        assert!(text.contains(&format!("{} (latest)", v[1])), "{text}");
        assert!(
            text.contains("metrics.accuracy") && text.contains("0.91"),
            "{text}"
        );
    });
}

#[test]
fn promote_rolls_back_and_forward_and_says_what_latest_was() {
    both(|f| {
        let v = f.publish("digits", 2);
        let out = f.ok(&["models", "promote", &f.uri(&format!("digits/{}", v[0]))]);
        assert!(out.contains(&format!("latest was {}", v[1])), "{out}");
        assert!(out.contains(&format!("latest is  {}", v[0])), "{out}");
        assert_eq!(f.latest("digits"), v[0]);

        let j = f.json(&["models", "promote", &f.uri(&format!("digits/{}", v[0]))]);
        assert_eq!(j["changed"], false);
        let j = f.json(&["models", "promote", &f.uri(&format!("digits/{}", v[1]))]);
        assert_eq!(j["previous"], v[0].as_str());
        assert_eq!(j["latest"], v[1].as_str());
        assert_eq!(j["changed"], true);
        assert_eq!(f.latest("digits"), v[1]);
    });
}

#[test]
fn two_promotions_at_once_leave_latest_whole_on_one_of_them() {
    both(|f| {
        let v = f.publish("digits", 2);
        for round in 0..10 {
            let children: Vec<_> = v
                .iter()
                .map(|version| {
                    f.trainer()
                        .args(["models", "promote", &f.uri(&format!("digits/{version}"))])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("spawn")
                })
                .collect();
            // Locally both succeed (last rename wins). s3s-fs writes two concurrent PUTs of
            // one key into the same file, so it can answer one of them with a checksum
            // mismatch (real S3 replaces an object atomically, last writer wins): a
            // promotion may then fail, with a clear error and nothing half-done, but never
            // both, and `latest` must be whole either way.
            let mut succeeded = 0;
            for c in children {
                let out = c.wait_with_output().expect("wait");
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    succeeded += 1;
                } else {
                    assert!(
                        f.is_s3()
                            && err.contains("cannot promote")
                            && err.contains("checksum mismatch"),
                        "round {round}: a promotion failed: {err}"
                    );
                }
            }
            assert!(succeeded >= 1, "round {round}: both promotions failed");
            // A whole pointer (it parses, its checksum matches) naming one of the two.
            let now = f.latest("digits");
            assert!(v.contains(&now), "round {round}: {now}");
        }
        // No staged pointer left behind, nothing else written.
        assert_eq!(list_versions(f.store.as_ref(), "digits").expect("list"), v);
        let keys = f.store.list("digits/").expect("keys");
        assert_eq!(keys.len(), 3, "{keys:?}");
    });
}

#[test]
fn prune_deletes_the_oldest_beyond_keep_but_never_latest() {
    both(|f| {
        let v = f.publish("digits", 5);
        // latest on the oldest version: it must survive any --keep.
        f.ok(&["models", "promote", &f.uri(&format!("digits/{}", v[0]))]);
        let before = f.latest_bytes("digits");

        let out = f.ok(&[
            "models",
            "prune",
            &f.uri("digits"),
            "--keep",
            "2",
            "--dry-run",
        ]);
        for gone in &v[1..3] {
            assert!(
                out.contains(&format!(
                    "would delete {}",
                    f.uri(&format!("digits/{gone}"))
                )),
                "{out}"
            );
        }
        assert!(out.contains("dry run, nothing deleted"), "{out}");
        assert_eq!(list_versions(f.store.as_ref(), "digits").expect("list"), v);

        let j = f.json(&["models", "prune", &f.uri("digits"), "--keep", "2"]);
        assert_eq!(j["deleted"], serde_json::json!([v[1], v[2]]));
        assert_eq!(j["kept"], serde_json::json!([v[4], v[3], v[0]]));
        assert_eq!(
            list_versions(f.store.as_ref(), "digits").expect("list"),
            [v[0].clone(), v[3].clone(), v[4].clone()]
        );

        // --keep 0 (from the environment): only latest stays.
        let o = run(f.trainer().env("TRAINER_PRUNE_KEEP", "0").args([
            "models",
            "prune",
            &f.uri("digits"),
        ]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("deleted {}", f.uri(&format!("digits/{}", v[3])))),
            "{out}"
        );
        assert_eq!(
            list_versions(f.store.as_ref(), "digits").expect("list"),
            [v[0].clone()]
        );
        assert_eq!(f.latest_bytes("digits"), before);
        assert_eq!(f.latest("digits"), v[0]);
    });
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    both(|f| {
        let v = f.publish("digits", 2);
        let before = f.latest_bytes("digits");
        let absent = "20200101T000000.000Z-0123456789ab";

        let e = f.fails(&["models", "list", &f.uri("nope")]);
        assert!(e.contains(&format!("no model at {}", f.uri("nope"))), "{e}");
        let e = f.fails(&["models", "promote", &f.uri(&format!("nope/{absent}"))]);
        assert!(
            e.contains("no model at") && e.contains("latest is unchanged"),
            "{e}"
        );
        let e = f.fails(&["models", "show", &f.uri("nope")]);
        assert!(e.contains("no model at"), "{e}");

        let e = f.fails(&["models", "promote", &f.uri(&format!("digits/{absent}"))]);
        assert!(
            e.contains(&format!(
                "{}: no such version of model \"digits\"",
                f.uri(&format!("digits/{absent}"))
            )),
            "{e}"
        );
        let e = f.fails(&["models", "show", &f.uri(&format!("digits/{absent}"))]);
        assert!(e.contains("no such version"), "{e}");

        let e = f.fails(&["models", "promote", &f.uri("digits")]);
        assert!(e.contains("\"digits\" is not a version name"), "{e}");
        let e = f.fails(&["models", "list", &f.uri(&format!("digits/{}", v[0]))]);
        assert!(e.contains("takes <store>/<name>, not a version"), "{e}");
        let e = f.fails(&[
            "models",
            "prune",
            &f.uri(&format!("digits/{}", v[0])),
            "--keep",
            "1",
        ]);
        assert!(e.contains("takes <store>/<name>, not a version"), "{e}");
        let e = f.fails(&["models", "list", &f.uri("bad name")]);
        assert!(e.contains("model name \"bad name\" contains ' '"), "{e}");

        // A version whose bytes no longer match its model_id: refused, latest unchanged.
        let key = model_key("digits", &v[0]);
        let mut a = artifact("digits", 0);
        a.intercepts = vec![9.0]; // model_id left as it was
        tamper(f, &key, &a.to_json());
        let e = f.fails(&["models", "promote", &f.uri(&format!("digits/{}", v[0]))]);
        assert!(
            e.contains("fails verification") && e.contains("latest is unchanged"),
            "{e}"
        );
        // Locally the content no longer hashes to its model_id; on S3 the stored checksum
        // catches the change first.
        let why = if f.server.is_some() {
            "checksum mismatch"
        } else {
            "model_id"
        };
        assert!(e.contains(why), "{e}");
        let e = f.fails(&["models", "show", &f.uri(&format!("digits/{}", v[0]))]);
        assert!(e.contains("fails verification"), "{e}");
        // list still lists it, saying why it is broken.
        let j = f.json(&["models", "list", &f.uri("digits")]);
        let broken = &j["versions"][1];
        assert_eq!(broken["version"], v[0].as_str());
        assert!(
            broken["error"]
                .as_str()
                .is_some_and(|e| e.contains("fails verification")),
            "{j}"
        );

        assert_eq!(f.latest_bytes("digits"), before);
        assert_eq!(list_versions(f.store.as_ref(), "digits").expect("list"), v);
    });
}

/// Replace an object's bytes behind the store's back (on S3: the file s3s-fs serves, so
/// the stored checksum still describes the old bytes).
fn tamper(f: &Fixture, key: &str, bytes: &[u8]) {
    match &f.server {
        Some(server) => {
            std::fs::write(server.object_path(&format!("models/team/{key}")), bytes)
                .expect("rewrite object");
        }
        None => {
            let path = Path::new(&f.root).join(key);
            std::fs::write(path, bytes).expect("rewrite file");
        }
    }
}

#[test]
fn a_store_that_is_not_one_is_named() {
    let f = Fixture::local();
    let missing = f.dir.path().join("no-such-dir");
    let e = f.fails(&["models", "list", &format!("{}/digits", missing.display())]);
    assert!(
        e.contains(&format!(
            "{} is not a model store: no such directory",
            missing.display()
        )),
        "{e}"
    );
    let file = f.dir.path().join("data.csv");
    std::fs::write(&file, "x,label\n1,0\n").expect("write");
    let e = f.fails(&["models", "list", &format!("{}/digits", file.display())]);
    assert!(e.contains("is not a model store: it is a file"), "{e}");
    let e = f.fails(&["models", "list", "http://example.com/digits"]);
    assert!(e.contains("only local paths and s3:// URIs"), "{e}");

    let s = Fixture::s3();
    let e = s.fails(&["models", "list", "s3://no-such-bucket/models/digits"]);
    assert!(
        e.contains("s3://no-such-bucket/models/ is not a model store: bucket \"no-such-bucket\" does not exist"),
        "{e}"
    );
}

#[test]
fn verbs_are_documented_in_help() {
    let f = Fixture::local();
    let help = f.ok(&["models", "--help"]);
    for verb in ["list", "show", "promote", "prune"] {
        assert!(help.contains(verb), "{help}");
    }
    let help = f.ok(&["models", "prune", "--help"]);
    assert!(
        help.contains("TRAINER_PRUNE_KEEP") && help.contains("never the one"),
        "{help}"
    );
}

#[test]
fn a_real_fit_is_listed_and_promoted() {
    let f = Fixture::local();
    let data = f.dir.path().join("g.csv");
    let gen_args = [
        "generate",
        "--rows",
        "120",
        "--features",
        "3",
        "--classes",
        "2",
        "--out",
    ];
    let mut gen_cmd = f.trainer();
    gen_cmd.args(gen_args).arg(&data);
    assert!(run(&mut gen_cmd).status.success());
    for _ in 0..2 {
        f.ok(&[
            "fit",
            "--data",
            &data.display().to_string(),
            "--alphas",
            "1",
            "--folds",
            "2",
            "--mode",
            "seq",
            "--store",
            &f.root,
            "--name",
            "toy",
        ]);
        std::thread::sleep(Duration::from_millis(3));
    }
    let j = f.json(&["models", "list", &f.uri("toy")]);
    let v = versions_of(&j);
    assert_eq!(v.len(), 2);
    assert!(
        j["versions"][0]["accuracy"]
            .as_f64()
            .is_some_and(|a| a > 0.5),
        "{j}"
    );
    f.ok(&["models", "promote", &f.uri(&format!("toy/{}", v[1]))]);
    assert_eq!(f.latest("toy"), v[1]);
}

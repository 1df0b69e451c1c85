//! Session set-up and keys through the real binary: parties running different compiled
//! programs stop at once naming the odd one out; per-party key generation; private weights and
//! keys keep their permissions; mistakes get errors a person can act on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn compile_lenet_at(dir: &Path, scale: &str) {
    cryptflow_ok(&[
        "compile",
        path_str(&fixtures().join("models/lenet_mnist.onnx")),
        "-o",
        path_str(dir),
        "--strip-output-softmax",
        "--scale",
        scale,
    ]);
}

/// One key folder per party, made with `keygen --id` and completed by copying the other
/// parties' certificates, as the README says to deploy.
fn per_party_keys(root: &Path, parties: usize) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (0..parties).map(|i| root.join(format!("keys{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        let out = cryptflow_ok(&["keygen", "--id", &i.to_string(), "--parties", &parties.to_string(), "-o", path_str(d)]);
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(printed.len(), 95, "a SHA-256 fingerprint on stdout: {printed}");
        assert!(stderr(&out).contains(&printed), "the fingerprint is explained on stderr too");
        for j in 0..parties {
            assert_eq!(d.join(format!("party{j}.key")).exists(), i == j, "keygen --id {i} writes only its own key");
        }
    }
    for (i, d) in dirs.iter().enumerate() {
        for (j, other) in dirs.iter().enumerate() {
            if i != j {
                std::fs::copy(other.join(format!("party{j}.crt")), d.join(format!("party{j}.crt"))).unwrap();
            }
        }
    }
    dirs
}

fn peers(n: usize) -> String {
    free_ports(n).iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
}

#[test]
fn parties_with_different_programs_stop_naming_the_odd_one_out() {
    let work = tempfile::tempdir().unwrap();
    let (d12, d13) = (work.path().join("s12"), work.path().join("s13"));
    compile_lenet_at(&d12, "12");
    compile_lenet_at(&d13, "13");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let client_args = ["--input", path_str(&x), "-o", path_str(&y)];

    // Porthos: the model owner compiled at scale 13, client and helper have scale 12.
    let keys = per_party_keys(&work.path().join("p3"), 3);
    let peers3 = peers(3);
    let owner = spawn_party("porthos", 0, &peers3, &d13, &keys[0], &[]);
    let helper = spawn_party("porthos", 2, &peers3, &d12, &keys[2], &[]);
    let client = spawn_party("porthos", 1, &peers3, &d12, &keys[1], &client_args);
    for (id, child) in [(1, client), (0, owner), (2, helper)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "party {id}: {err}");
        assert!(err.contains("different compiled program"), "party {id}: {err}");
        if id == 0 {
            assert!(err.contains("this party (party 0 (model owner)) runs a different compiled program"), "{err}");
        } else {
            assert!(err.contains("party 0 (model owner) runs a different compiled program"), "party {id}: {err}");
        }
        assert!(!err.contains("disconnected"), "party {id}: {err}");
    }
    assert!(!y.exists());

    // 2PC: each party names the other.
    let keys = per_party_keys(&work.path().join("p2"), 2);
    let peers2 = peers(2);
    let owner = spawn_party("2pc", 0, &peers2, &d12, &keys[0], &[]);
    let client = spawn_party("2pc", 1, &peers2, &d13, &keys[1], &client_args);
    for (id, child) in [(1, client), (0, owner)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "party {id}: {err}");
        let other = format!("party {} ({}) runs a different compiled program", 1 - id, ["model owner", "client"][1 - id]);
        assert!(err.contains(&other), "party {id}: {err}");
    }
    assert!(!y.exists());
}

#[test]
fn parties_with_different_truncations_stop_naming_the_other() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("s12");
    compile_lenet_at(&dir, "12");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let keys = per_party_keys(&work.path().join("p2"), 2);
    let peers2 = peers(2);
    // The model owner keeps the default (faithful), the client asks for the paper's local one.
    let owner = spawn_party("2pc", 0, &peers2, &dir, &keys[0], &[]);
    let client = spawn_party("2pc", 1, &peers2, &dir, &keys[1], &["--input", path_str(&x), "-o", path_str(&y), "--truncation", "local"]);
    for (id, child) in [(1, client), (0, owner)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "party {id}: {err}");
        let other = format!("party {} ({}) runs --truncation {}", 1 - id, ["model owner", "client"][1 - id], ["faithful", "local"][1 - id]);
        assert!(err.contains(&other) && err.contains("every party must pass the same --truncation"), "party {id}: {err}");
    }
    assert!(!y.exists());
}

#[test]
fn keygen_keeps_existing_private_keys_unless_forced_and_says_what_it_wrote() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    let out = cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    assert!(stderr(&out).contains("LOCAL TESTS ONLY"), "{}", stderr(&out));
    let key0 = std::fs::read(keys.join("party0.key")).unwrap();
    let out = cryptflow(&["keygen", "-o", path_str(&keys)]);
    assert_clean_failure(&out, "keygen over existing keys");
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(keys.join("party0.key")).unwrap(), key0, "the old key is untouched");
    let out = cryptflow(&["keygen", "--id", "0", "-o", path_str(&keys)]);
    assert_clean_failure(&out, "keygen --id over an existing key");
    assert_eq!(std::fs::read(keys.join("party0.key")).unwrap(), key0);
    cryptflow_ok(&["keygen", "--id", "0", "-o", path_str(&keys), "--force"]);
    assert_ne!(std::fs::read(keys.join("party0.key")).unwrap(), key0, "--force replaces it");
    let mode = std::fs::metadata(keys.join("party0.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = cryptflow(&["keygen", "--id", "3", "-o", path_str(&work.path().join("k3"))]);
    assert_clean_failure(&out, "keygen --id 3");
    let help = String::from_utf8_lossy(&cryptflow_ok(&["keygen", "--help"]).stdout).into_owned();
    assert!(help.contains("--id") && help.contains("impersonate"), "{help}");
}

#[test]
fn recompiling_makes_fresh_private_weights_and_readable_weights_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let weights = dir.join("model-owner/weights.fixed");
    std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.join("model-owner/weights.float"), std::fs::Permissions::from_mode(0o644)).unwrap();
    compile_lenet(&dir);
    for name in ["weights.fixed", "weights.float"] {
        let mode = std::fs::metadata(dir.join("model-owner").join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} after recompiling");
    }
    std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o640)).unwrap();
    let x = fixtures().join("data/mnist_samples_x.npy");
    let out = cryptflow(&["run", path_str(&dir), "--backend", "cleartext", "--input", path_str(&x), "-o", path_str(&work.path().join("y.npy"))]);
    assert_clean_failure(&out, "run with group-readable weights");
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn mistakes_get_errors_a_person_can_act_on() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lenet");
    compile_lenet(&dir);
    let x = work.path().join("x.npy");
    std::fs::copy(fixtures().join("data/mnist_samples_x.npy"), &x).unwrap();
    let before = std::fs::read(&x).unwrap();
    let keys = work.path().join("keys");
    cryptflow_ok(&["keygen", "-o", path_str(&keys)]);
    let run = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["run", path_str(dir), "--backend", "cleartext"];
        args.extend_from_slice(extra);
        cryptflow(&args)
    };
    let expect = |out: std::process::Output, context: &str, wanted: &[&str]| {
        assert_clean_failure(&out, context);
        let err = stderr(&out);
        for w in wanted {
            assert!(err.contains(w), "{context}: `{w}` missing from:\n{err}");
        }
        for internal in ["Tamper", "TwoPc", "Resource temporarily unavailable"] {
            assert!(!err.contains(internal), "{context}: internal name in:\n{err}");
        }
    };

    // -o equal to --input, for run and party; the input is left alone.
    expect(run(&dir, &["--input", path_str(&x), "-o", path_str(&x)]), "run -o = --input", &["overwrite the input"]);
    let p = peers(3);
    let party = cryptflow(&["party", "--id", "1", "--peers", &p, path_str(&dir), "--keys", path_str(&keys), "--input", &format!("x={}", path_str(&x)), "-o", path_str(&x)]);
    expect(party, "party -o = --input", &["overwrite the input"]);
    assert_eq!(std::fs::read(&x).unwrap(), before);

    // The model file instead of the compiled folder; a folder that is not a program.
    let y = work.path().join("y.npy");
    let model = fixtures().join("models/lenet_mnist.onnx");
    expect(run(&model, &["--input", path_str(&x), "-o", path_str(&y)]), "run on the model", &["model file", "cryptflow compile"]);
    expect(run(work.path(), &["--input", path_str(&x), "-o", path_str(&y)]), "run on a folder", &["not a compiled program", "cryptflow compile"]);
    let party = cryptflow(&["party", "--id", "2", "--peers", &p, path_str(&model), "--keys", path_str(&keys)]);
    expect(party, "party on the model", &["model file", "cryptflow compile"]);

    // The model owner on a copy without model-owner/.
    let public = work.path().join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::copy(dir.join("program.json"), public.join("program.json")).unwrap();
    let party = cryptflow(&["party", "--id", "0", "--peers", &p, path_str(&public), "--keys", path_str(&keys)]);
    expect(party, "owner without weights", &["model owner", "model-owner"]);

    // Flag spellings, not internal names.
    let out = cryptflow(&["run", path_str(&dir), "--backend", "2pc", "--inject-fault", "0:tamper", "--input", path_str(&x), "-o", path_str(&y)]);
    expect(out, "2pc with tamper", &["0:tamper", "2pc"]);
    let party = cryptflow(&["party", "--backend", "cleartext", "--id", "0", "--peers", &p, path_str(&dir), "--keys", path_str(&keys)]);
    expect(party, "party --backend cleartext", &["--backend cleartext"]);
}

#[test]
fn parties_with_different_protocols_stop_naming_the_other() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("s12");
    compile_lenet_at(&dir, "12");
    let x = fixtures().join("data/mnist_samples_x.npy");
    let y = work.path().join("y.npy");
    let keys = per_party_keys(&work.path().join("p3"), 3);
    let peers3 = peers(3);
    // The owner and the helper keep the default (compact), the client asks for the paper's.
    let owner = spawn_party("porthos", 0, &peers3, &dir, &keys[0], &[]);
    let client = spawn_party("porthos", 1, &peers3, &dir, &keys[1], &["--input", path_str(&x), "-o", path_str(&y), "--protocol", "porthos"]);
    let helper = spawn_party("porthos", 2, &peers3, &dir, &keys[2], &[]);
    for (id, child) in [(1, client), (0, owner), (2, helper)] {
        let (status, err) = wait_bounded(child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "party {id}: {err}");
        let other = if id == 1 { "party 0 (model owner) runs --protocol compact" } else { "party 1 (client) runs --protocol porthos" };
        assert!(err.contains(other) && err.contains("every party must pass the same --protocol"), "party {id}: {err}");
    }
    assert!(!y.exists());
}

//! Property tests for the `metric-loss` binary: arbitrary `.npy` files (valid headers with
//! odd shapes, dtypes and values, corrupted bytes, truncation) and arbitrary arguments exit
//! 0, or exit 2 with one `error:` line on stderr; never a panic, a backtrace or an internal
//! error.
//!
//! Each case runs the binary; case counts are small for CI. Raise them with
//! `PROPTEST_CASES=N`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use metric_loss_testkit::cases;
use proptest::prelude::*;

/// A `.npy` file: a header with `descr`, order and shape, then raw data bytes.
fn npy(descr: &str, fortran: bool, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header);
    out.extend(data);
    out
}

fn special_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -2.0..2.0f32,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(1e30),
        1 => Just(1e-40),
    ]
}

/// A `.npy` file, valid or not.
fn npy_file() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop::sample::select(vec![
        "<f4", ">f4", "<f8", "<i8", "<u8", "<i1", "<u1", "<f2", "|b1", "<c8", "<U3", "|O",
    ]);
    let shape = prop_oneof![
        Just(vec![]),
        prop::collection::vec(0u64..6, 1..4),
        // Absurd sizes, with products that fit in u64 and that overflow it.
        Just(vec![u64::MAX / 4, 2]),
        Just(vec![1 << 31, 1 << 31]),
        Just(vec![u64::MAX, 2]),
        Just(vec![1 << 32, 1 << 32, 3]),
    ];
    let valid = (
        descr,
        any::<bool>(),
        shape,
        prop::collection::vec(special_f32(), 0..40),
    )
        .prop_map(|(descr, fortran, shape, values)| {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            npy(descr, fortran, &shape, &data)
        });
    let corrupted = (
        prop::collection::vec(special_f32(), 8),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(values, edits, cut)| {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut bytes = npy("<f4", false, &[4, 2], &data);
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep.max(bytes.len() / 2));
            bytes
        });
    prop_oneof![
        4 => valid,
        2 => corrupted,
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn dir(test: &str, case: u64) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("metric-loss-cli-properties")
        .join(format!("{test}-{case}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary and checks the exit contract.
fn check(args: &[&std::ffi::OsStr]) -> Result<(), TestCaseError> {
    let out = Command::cargo_bin("metric-loss")
        .unwrap()
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    prop_assert!(
        code == Some(0) || code == Some(2),
        "exit {code:?}: {stderr}"
    );
    if code == Some(2) {
        prop_assert!(stderr.starts_with("error:"), "stderr: {stderr}");
    }
    prop_assert!(
        !stderr.contains("panicked")
            && !stderr.contains("internal error")
            && !stderr.contains("backtrace"),
        "stderr: {stderr}"
    );
    Ok(())
}

const CONFIG: &str = r#"{"class_name": "TripletLoss", "config": {"margin": 0.5}}"#;

proptest! {
    #![proptest_config(cases(48))]

    /// Arbitrary embeddings, labels, weights and key files to `eval`.
    #[test]
    fn eval_on_arbitrary_npy_files_exits_0_or_2(
        x in npy_file(),
        y in npy_file(),
        w in prop::option::of(npy_file()),
        keys in prop::option::of((npy_file(), npy_file())),
        seed in any::<u64>(),
    ) {
        let d = dir("eval", seed);
        let write = |name: &str, bytes: &[u8]| {
            let p = d.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let config = write("loss.json", CONFIG.as_bytes());
        let (xp, yp) = (write("x.npy", &x), write("y.npy", &y));
        let mut args: Vec<std::ffi::OsString> = vec![
            "eval".into(), "--config".into(), config.into(), "--embeddings".into(), xp.into(),
            "--labels".into(), yp.into(), "--grad-out".into(), d.join("g.npy").into(),
        ];
        if let Some(w) = w {
            args.extend(["--sample-weight".into(), write("w.npy", &w).into()]);
        }
        if let Some((kx, ky)) = keys {
            args.extend(["--key-embeddings".into(), write("kx.npy", &kx).into()]);
            args.extend(["--key-labels".into(), write("ky.npy", &ky).into()]);
        }
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        check(&refs)?;
    }

    /// Arbitrary arguments, including unknown flags and absurd numbers.
    #[test]
    fn arbitrary_arguments_exit_0_or_2(
        args in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "eval", "list", "check-config", "bench", "--n", "--d", "--reps", "--warmup",
                    "--threads", "--config", "--embeddings", "--labels", "--json", "0", "1",
                    "18446744073709551616", "-1", "nan", "/nonexistent", "--help", "--version",
                ]).prop_map(String::from),
                "[ -~]{0,12}",
            ],
            0..6,
        ),
    ) {
        // `bench` with valid sizes would time a real batch: keep it tiny.
        let mut args = args;
        if args.first().map(String::as_str) == Some("bench") {
            args.extend(["--n".into(), "4".into(), "--d".into(), "2".into(), "--reps".into(), "1".into()]);
        }
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| std::ffi::OsStr::new(a.as_str())).collect();
        check(&refs)?;
    }
}

/// Regression (was a known issue of the `npyz` dependency): a header whose shape's
/// product overflows u64 (e.g. `(18446744073709551615, 2)`) panicked inside
/// `NpyHeader::from_reader` (`shape.iter().product()`) in debug builds. The CLI now checks
/// the shape (overflow-checked, and against the file's length) before npyz sees it, and
/// refuses the file with a typed error naming it.
#[test]
fn npy_shape_product_overflow_is_a_typed_error() {
    let d = dir("overflow", 0);
    let x = d.join("x.npy");
    std::fs::write(&x, npy("<f4", false, &[u64::MAX, 2], &[0; 8])).unwrap();
    let config = d.join("loss.json");
    std::fs::write(&config, CONFIG).unwrap();
    let args = [
        "eval",
        "--config",
        config.to_str().unwrap(),
        "--embeddings",
        x.to_str().unwrap(),
        "--labels",
        x.to_str().unwrap(),
    ];
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    check(&refs).unwrap();
    let err = metric_loss_cli::npy::read_embeddings(&x).unwrap_err();
    assert!(
        err.message().contains("x.npy") && err.message().contains("invalid .npy header"),
        "{err}"
    );
}

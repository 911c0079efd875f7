//! Runs the `metric-loss` binary on good and bad inputs. Fixtures are written here, with
//! npyz, into a fresh directory under cargo's `CARGO_TARGET_TMPDIR`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use metric_loss_core::{
    Batch, Embeddings, LossInput, LossOutput, MetricLossExt, SampleWeight, Workspace,
};
use npyz::WriterBuilder;
use serde_json::Value;

/// The spec's golden batch: e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8).
const X: [f32; 8] = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
const Y: [i64; 4] = [0, 0, 1, 2];
const MARGIN_HALF_HARD: &str = r#"{"class_name": "TripletLoss", "config": {"margin": 0.5, "negative_mining_strategy": "hard"}}"#;

/// A fresh directory for one test.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("metric-loss-cli")
            .join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn npy<T: npyz::AutoSerialize + Copy>(&self, name: &str, data: &[T], shape: &[u64]) -> PathBuf {
        let path = self.path(name);
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(BufWriter::new(File::create(&path).unwrap()))
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        path
    }

    fn text(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the binary; returns (status, stdout, stderr) with this directory shown as `[TMP]`.
    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
        let out = Command::cargo_bin("metric-loss")
            .unwrap()
            .args(args.iter().map(|a| a.as_ref()))
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let clean = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .unwrap()
                .replace(&self.dir.display().to_string(), "[TMP]")
        };
        (
            out.status.code().unwrap_or(-1),
            clean(&out.stdout),
            clean(&out.stderr),
        )
    }

    /// Writes the golden batch (f32) and the margin-0.5 hard-negative config.
    fn golden(&self) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.text("triplet.json", MARGIN_HALF_HARD),
            self.npy("x.npy", &X, &[4, 2]),
            self.npy("y.npy", &Y, &[4]),
        )
    }
}

fn read_npy<T: npyz::Deserialize>(path: &Path) -> (Vec<u64>, String, Vec<T>) {
    let npy = npyz::NpyFile::new(std::io::BufReader::new(File::open(path).unwrap())).unwrap();
    let shape = npy.shape().to_vec();
    let dtype = npy.dtype().descr();
    (shape, dtype, npy.into_vec().unwrap())
}

fn json(stdout: &str) -> Value {
    assert_eq!(stdout.lines().count(), 1, "one line expected: {stdout}");
    serde_json::from_str(stdout).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

// ---------------------------------------------------------------- eval, good inputs

#[test]
fn eval_golden_batch_matches_the_library_exactly() {
    let fx = Fixture::new("eval_golden");
    let (config, x, y) = fx.golden();
    let grad = fx.path("g.npy");
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
        &"--grad-out",
        &grad,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    insta::assert_snapshot!("eval_golden_stdout", stdout);

    // The same loss, computed in-process from the same config.
    let loss = metric_loss_registry::load(&config).unwrap();
    let expected = loss.evaluate(&Y, &X, 2).unwrap();
    let got = json(&stdout);
    // The JSON numbers are the shortest decimals of the f32 values: they read back exactly.
    assert_eq!(got["loss"].as_f64().unwrap() as f32, expected.loss);
    let per_example: Vec<f32> = floats(&got["per_example_loss"])
        .into_iter()
        .map(|v| v as f32)
        .collect();
    assert_eq!(per_example, expected.per_example);
    assert!((expected.per_example[1] - 0.3).abs() < 1e-6);

    let (shape, dtype, g) = read_npy::<f32>(&grad);
    assert_eq!((shape, dtype.as_str()), (vec![4, 2], "'<f4'"));
    assert_eq!(g, expected.grad_queries);
}

#[test]
fn eval_f64_with_int32_column_labels_and_weights() {
    let fx = Fixture::new("eval_f64");
    let config = fx.text(
        "triplet.yaml",
        "class_name: TripletLoss\nconfig:\n  distance: l2\n  margin: 0.2\n",
    );
    let x64: Vec<f64> = X.iter().map(|v| f64::from(*v) * 1.5).collect();
    let x = fx.npy("x.npy", &x64, &[4, 2]);
    let labels: [i32; 4] = [0, 0, 1, 1];
    let y = fx.npy("y.npy", &labels, &[4, 1]);
    let weights = [1.0f32, 2.0, 0.0, 0.5];
    let w = fx.npy("w.npy", &weights, &[4]);
    let grad = fx.path("grad.npy");
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
        &"--sample-weight",
        &w,
        &"--grad-out",
        &grad,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    insta::assert_snapshot!("eval_f64_stdout", stdout);

    let loss = metric_loss_registry::load(&config).unwrap();
    let w64: Vec<f64> = weights.iter().map(|v| f64::from(*v)).collect();
    let y64: Vec<i64> = labels.iter().map(|v| i64::from(*v)).collect();
    let batch = Batch::new(&y64, Embeddings::from_row_major(&x64, 4, 2).unwrap()).unwrap();
    let input = LossInput::new(batch).with_sample_weight(SampleWeight::PerExample(&w64));
    let expected = loss.compute(&input).unwrap();
    let got = json(&stdout);
    assert_eq!(got["loss"].as_f64().unwrap(), expected.loss);
    assert_eq!(floats(&got["per_example_loss"]), expected.per_example);
    let (shape, dtype, g) = read_npy::<f64>(&grad);
    assert_eq!((shape, dtype.as_str()), (vec![4, 2], "'<f8'"));
    assert_eq!(g, expected.grad_queries);
}

#[test]
fn eval_with_a_scalar_weight_and_uint8_labels() {
    let fx = Fixture::new("eval_scalar_weight");
    let (config, x, _) = fx.golden();
    let y = fx.npy("y.npy", &[0u8, 0, 1, 2], &[4]);
    let w = fx.npy("w.npy", &[2.0f64], &[]);
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
        &"--sample-weight",
        &w,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let loss = metric_loss_registry::load(&config).unwrap();
    let batch = Batch::new(&Y, Embeddings::from_row_major(&X, 4, 2).unwrap()).unwrap();
    let input = LossInput::new(batch).with_sample_weight(SampleWeight::Scalar(2.0f32));
    let expected = loss.compute(&input).unwrap();
    assert_eq!(
        json(&stdout)["loss"].as_f64().unwrap() as f32,
        expected.loss
    );
}

#[test]
fn eval_with_separate_keys() {
    let fx = Fixture::new("eval_keys");
    let (config, x, y) = fx.golden();
    let bank: [f32; 6] = [0.6, 0.8, -1.0, 0.0, 0.0, -1.0];
    let bank_labels: [i64; 3] = [0, 1, 2];
    let k = fx.npy("bank.npy", &bank, &[3, 2]);
    let ky = fx.npy("bank_y.npy", &bank_labels, &[3]);
    let (g, gk) = (fx.path("g.npy"), fx.path("gk.npy"));
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
        &"--key-embeddings",
        &k,
        &"--key-labels",
        &ky,
        &"--keep-diagonal",
        &"--grad-out",
        &g,
        &"--key-grad-out",
        &gk,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    insta::assert_snapshot!("eval_keys_stdout", stdout);

    let loss = metric_loss_registry::load(&config).unwrap();
    let queries = Batch::new(&Y, Embeddings::from_row_major(&X, 4, 2).unwrap()).unwrap();
    let keys = Batch::new(
        &bank_labels,
        Embeddings::from_row_major(&bank, 3, 2).unwrap(),
    )
    .unwrap();
    let input = LossInput::new(queries)
        .with_keys(keys)
        .remove_diagonal(false);
    let mut expected = LossOutput::new();
    loss.compute_into(&input, &mut Workspace::new(), &mut expected)
        .unwrap();
    let got = json(&stdout);
    assert_eq!(got["loss"].as_f64().unwrap() as f32, expected.loss);
    let (shape, _, gq) = read_npy::<f32>(&g);
    assert_eq!((shape, gq), (vec![4, 2], expected.grad_queries));
    let (shape, _, gkeys) = read_npy::<f32>(&gk);
    assert_eq!((shape, gkeys), (vec![3, 2], expected.grad_keys));
}

#[test]
fn eval_two_views_matches_the_library_exactly() {
    let fx = Fixture::new("eval_views");
    let view_b: [f64; 8] = [0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 1.0, 0.1];
    let view_a = X.map(f64::from);
    let a = fx.npy("a.npy", &view_a, &[4, 2]);
    let b = fx.npy("b.npy", &view_b, &[4, 2]);
    let config = fx.text(
        "simclr.yaml",
        "class_name: SimCLRLoss\nconfig: {temperature: 0.5}\n",
    );
    let (ga, gb) = (fx.path("ga.npy"), fx.path("gb.npy"));
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &a,
        &"--key-embeddings",
        &b,
        &"--grad-out",
        &ga,
        &"--key-grad-out",
        &gb,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));

    let loss = metric_loss_registry::load(&config).unwrap();
    let input = LossInput::views(
        Embeddings::from_row_major(&view_a, 4, 2).unwrap(),
        Embeddings::from_row_major(&view_b, 4, 2).unwrap(),
    );
    let expected = loss.compute(&input).unwrap();
    let got = json(&stdout);
    assert_eq!(got["loss"].as_f64().unwrap(), expected.loss);
    assert_eq!(floats(&got["per_example_loss"]), expected.per_example);
    assert_eq!(
        read_npy::<f64>(&ga),
        (vec![4, 2], "'<f8'".into(), expected.grad_queries)
    );
    assert_eq!(
        read_npy::<f64>(&gb),
        (vec![4, 2], "'<f8'".into(), expected.grad_keys)
    );
}

#[test]
fn every_config_format_gives_the_same_result() {
    let fx = Fixture::new("formats");
    let (json_config, x, y) = fx.golden();
    let toml = fx.text(
        "triplet.toml",
        "class_name = \"TripletLoss\"\n[config]\nmargin = 0.5\nnegative_mining_strategy = \"hard\"\n",
    );
    let yaml = fx.text(
        "triplet.yml",
        "class_name: TripletLoss\nconfig: {margin: 0.5, negative_mining_strategy: hard}\n",
    );
    let outputs: Vec<String> = [json_config, toml, yaml]
        .iter()
        .map(|c| {
            let (code, stdout, stderr) = fx.run(&[
                &"eval",
                &"--config",
                c,
                &"--embeddings",
                &x,
                &"--labels",
                &y,
            ]);
            assert_eq!((code, stderr.as_str()), (0, ""));
            stdout
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

/// Cases copied from the vendored TF Similarity 0.17.1 fixtures
/// (`metric-loss-conformance/fixtures/triplet_public.json.gz`).
#[test]
fn eval_agrees_with_tf_similarity_fixture_cases() {
    let fx = Fixture::new("tfsim");
    let text = include_str!("fixtures/tfsim_triplet_cases.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        // TF Similarity 0.17's spelling: margin null means the soft margin.
        let config = serde_json::json!({
            "class_name": "TripletLoss",
            "config": {
                "distance": c["distance"],
                "positive_mining_strategy": c["positive_mining_strategy"],
                "negative_mining_strategy": c["negative_mining_strategy"],
                "margin": c["margin"],
            }
        });
        let config = fx.text(&format!("case{i}.json"), &config.to_string());
        let rows = case["embeddings"].as_array().unwrap();
        let (n, d) = (rows.len(), rows[0].as_array().unwrap().len());
        let x: Vec<f32> = rows.iter().flat_map(floats).map(|v| v as f32).collect();
        let labels: Vec<i64> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let x = fx.npy(&format!("x{i}.npy"), &x, &[n as u64, d as u64]);
        let y = fx.npy(&format!("y{i}.npy"), &labels, &[n as u64, 1]);
        let grad = fx.path(&format!("g{i}.npy"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"eval",
            &"--config",
            &config,
            &"--embeddings",
            &x,
            &"--labels",
            &y,
            &"--grad-out",
            &grad,
        ];
        let w;
        if !case["sample_weight"].is_null() {
            let weights: Vec<f32> = floats(&case["sample_weight"])
                .into_iter()
                .map(|v| v as f32)
                .collect();
            w = fx.npy(&format!("w{i}.npy"), &weights, &[n as u64]);
            args.extend([&"--sample-weight" as &dyn AsRef<std::ffi::OsStr>, &w]);
        }
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!((code, stderr.as_str()), (0, ""), "{name}");
        let got = json(&stdout);

        // The conformance harness's float32 tolerances.
        let close = |what: &str, ours: f64, theirs: f64| {
            assert!(
                (ours - theirs).abs() <= 1e-5 * (1.0 + theirs.abs()),
                "{name}: {what}: ours {ours} vs TF {theirs}"
            );
        };
        close(
            "loss",
            got["loss"].as_f64().unwrap(),
            case["loss"].as_f64().unwrap(),
        );
        let ours = floats(&got["per_example_loss"]);
        let theirs = floats(&case["per_example_loss"]);
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            close(&format!("per_example_loss[{k}]"), *a, *b);
        }
        let (shape, _, g) = read_npy::<f32>(&grad);
        assert_eq!(shape, vec![n as u64, d as u64], "{name}");
        let tf_grad: Vec<f64> = case["grad"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        let scale = 1.0 + tf_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, (a, b)) in g.iter().zip(&tf_grad).enumerate() {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-4 * scale,
                "{name}: grad[{k}]: ours {a} vs TF {b}"
            );
        }
    }
}

/// TF Similarity's soft margin ln(e^-x + 1) + x is +inf below x ≈ -88.7 in float32; the
/// JSON output spells it as a string.
#[test]
fn an_infinite_soft_margin_loss_is_written_as_a_string() {
    let fx = Fixture::new("soft_inf");
    let config = fx.text(
        "soft.json",
        r#"{"class_name": "TripletLoss", "config": {"distance": "squared_euclidean", "margin": null}}"#,
    );
    let x = fx.npy(
        "x.npy",
        &[0.0f32, 0.0, 0.0, 0.0, 10.0, 0.0, 10.0, 0.0],
        &[4, 2],
    );
    let y = fx.npy("y.npy", &[0i64, 0, 1, 1], &[4]);
    let (code, stdout, stderr) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
    ]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(
        stdout,
        "{\"loss\":\"inf\",\"per_example_loss\":[\"inf\",\"inf\",\"inf\",\"inf\"]}\n"
    );
}

#[test]
fn an_empty_batch_has_zero_loss() {
    let fx = Fixture::new("empty");
    let (config, _, _) = fx.golden();
    let x = fx.npy::<f32>("x.npy", &[], &[0, 3]);
    let y = fx.npy::<i64>("y.npy", &[], &[0]);
    let (code, stdout, _) = fx.run(&[
        &"eval",
        &"--config",
        &config,
        &"--embeddings",
        &x,
        &"--labels",
        &y,
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "{\"loss\":0.0,\"per_example_loss\":[]}\n");
}

// ---------------------------------------------------------------- bad inputs

/// Every failure: status 2, one line on stderr starting with `error:`, naming the file.
#[test]
fn bad_inputs_exit_2_with_one_error_line_naming_the_file() {
    let fx = Fixture::new("bad");
    let (config, x, y) = fx.golden();
    let missing = fx.path("missing.npy");
    let x_int = fx.npy("x_int.npy", &[1i64, 0, 0, 1, 1, 1, 0, 0], &[4, 2]);
    let x_f16ish = fx.npy("x_u8.npy", &[1u8, 0, 0, 1, 1, 1, 0, 0], &[4, 2]);
    let x_1d = fx.npy("x_1d.npy", &X, &[8]);
    let x_3d = fx.npy("x_3d.npy", &X, &[2, 2, 2]);
    let mut nan = X;
    nan[3] = f32::NAN;
    let x_nan = fx.npy("x_nan.npy", &nan, &[4, 2]);
    let mut inf = X.map(f64::from);
    inf[6] = f64::NEG_INFINITY;
    let x_inf = fx.npy("x_inf.npy", &inf, &[4, 2]);
    let x64 = fx.npy("x64.npy", &X.map(f64::from), &[4, 2]);
    let y_short = fx.npy("y_short.npy", &[0i64, 0, 1], &[3]);
    let y_float = fx.npy("y_float.npy", &[0.0f32, 0.0, 1.0, 2.0], &[4]);
    let y_2d = fx.npy("y_2d.npy", &Y, &[2, 2]);
    let w_long = fx.npy("w_long.npy", &[1.0f32; 5], &[5]);
    let w_nan = fx.npy("w_nan.npy", &[1.0f32, f32::NAN, 1.0, 1.0], &[4]);
    let k3 = fx.npy("k3.npy", &[0.0f32; 9], &[3, 3]);
    let ky3 = fx.npy("ky3.npy", &[0i64, 1, 2], &[3]);
    let not_npy = fx.text("not.npy", "just some text\n");
    let truncated = fx.path("truncated.npy");
    {
        let bytes = std::fs::read(&x).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() - 8]).unwrap();
    }
    let bad_distance = fx.text(
        "bad_distance.toml",
        "class_name = \"TripletLoss\"\n[config]\ndistance = \"chebyshev\"\n",
    );
    let bad_key = fx.text(
        "bad_key.json",
        r#"{"class_name": "TripletLoss", "config": {"margn": 1.0}}"#,
    );
    let bad_class = fx.text("bad_class.yaml", "class_name: QuadrupletLoss\n");
    let bad_syntax = fx.text("bad_syntax.json", "{\"class_name\": ");
    let bad_ext = fx.text("config.ini", "[config]\n");
    let view_b = fx.npy("view_b.npy", &X, &[4, 2]);
    let simclr = fx.text(
        "simclr.json",
        r#"{"class_name": "SimCLRLoss", "config": {}}"#,
    );
    let soft_margin = fx.text(
        "soft.json",
        r#"{"class_name": "TripletLoss", "config": {"soft_margin": true, "margin": 0.3}}"#,
    );

    let eval = |config: &Path, x: &Path, y: &Path| -> Vec<PathBuf> {
        vec![
            "eval".into(),
            "--config".into(),
            config.into(),
            "--embeddings".into(),
            x.into(),
            "--labels".into(),
            y.into(),
        ]
    };
    let with = |mut base: Vec<PathBuf>, extra: &[&dyn AsRef<Path>]| {
        base.extend(extra.iter().map(|p| p.as_ref().to_path_buf()));
        base
    };
    let nope = fx.path("nope.toml");
    let no_dir = fx.path("no/such/dir/g.npy");
    let cases: Vec<(&str, Vec<PathBuf>, &Path)> = vec![
        ("missing embeddings", eval(&config, &missing, &y), &missing),
        ("missing labels", eval(&config, &x, &missing), &missing),
        ("missing config", eval(&fx.path("nope.toml"), &x, &y), &nope),
        ("integer embeddings", eval(&config, &x_int, &y), &x_int),
        ("uint8 embeddings", eval(&config, &x_f16ish, &y), &x_f16ish),
        ("1-D embeddings", eval(&config, &x_1d, &y), &x_1d),
        ("3-D embeddings", eval(&config, &x_3d, &y), &x_3d),
        ("NaN embedding", eval(&config, &x_nan, &y), &x_nan),
        ("infinite embedding", eval(&config, &x_inf, &y), &x_inf),
        (
            "labels shorter than embeddings",
            eval(&config, &x, &y_short),
            &y_short,
        ),
        ("float labels", eval(&config, &x, &y_float), &y_float),
        ("2-D labels", eval(&config, &x, &y_2d), &y_2d),
        (
            "weights too long",
            with(eval(&config, &x, &y), &[&"--sample-weight", &w_long]),
            &w_long,
        ),
        (
            "NaN weight",
            with(eval(&config, &x, &y), &[&"--sample-weight", &w_nan]),
            &w_nan,
        ),
        (
            "keys of another width",
            with(
                eval(&config, &x, &y),
                &[&"--key-embeddings", &k3, &"--key-labels", &ky3],
            ),
            &k3,
        ),
        (
            "keys of another dtype",
            with(
                eval(&config, &x, &y),
                &[&"--key-embeddings", &x64, &"--key-labels", &y],
            ),
            &x64,
        ),
        (
            "labelled keys without key labels",
            with(eval(&config, &x, &y), &[&"--key-embeddings", &view_b]),
            &view_b,
        ),
        (
            "a labelled loss on two views",
            vec![
                "eval".into(),
                "--config".into(),
                config.clone(),
                "--embeddings".into(),
                x.clone(),
                "--key-embeddings".into(),
                view_b.clone(),
            ],
            &x,
        ),
        (
            "a two-view loss on a labelled batch",
            eval(&simclr, &x, &y),
            &x,
        ),
        ("not a .npy file", eval(&config, &not_npy, &y), &not_npy),
        (
            "truncated .npy file",
            eval(&config, &truncated, &y),
            &truncated,
        ),
        (
            "unknown distance",
            eval(&bad_distance, &x, &y),
            &bad_distance,
        ),
        ("unknown config key", eval(&bad_key, &x, &y), &bad_key),
        ("unknown class", eval(&bad_class, &x, &y), &bad_class),
        ("syntax error", eval(&bad_syntax, &x, &y), &bad_syntax),
        ("unknown extension", eval(&bad_ext, &x, &y), &bad_ext),
        (
            "soft margin with a margin",
            eval(&soft_margin, &x, &y),
            &soft_margin,
        ),
        (
            "unwritable gradient",
            with(eval(&config, &x, &y), &[&"--grad-out", &no_dir]),
            &no_dir,
        ),
        (
            "check-config of an invalid config",
            vec!["check-config".into(), bad_distance.clone()],
            &bad_distance,
        ),
        (
            "bench with an invalid config",
            vec![
                "bench".into(),
                "--n".into(),
                "8".into(),
                "--d".into(),
                "2".into(),
                "--config".into(),
                bad_key.clone(),
            ],
            &bad_key,
        ),
    ];

    let mut transcript = String::new();
    for (what, args, file) in &cases {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!(code, 2, "{what}: {stderr}");
        assert_eq!(stdout, "", "{what}");
        assert!(stderr.starts_with("error: "), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        let file_name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            stderr.contains(file_name),
            "{what}: {stderr} does not name {file_name}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        // The set of registered losses grows with the workspace: keep it out of the snapshot.
        let stderr = stderr.replace(
            &format!("registered losses: {}", registered().join(", ")),
            "registered losses: [REGISTERED]",
        );
        transcript.push_str(&format!("# {what}\n{stderr}"));
    }
    insta::assert_snapshot!("bad_inputs_stderr", transcript);
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fixture::new("usage");
    for args in [
        vec!["eval", "--config", "c.json"],
        vec!["frobnicate"],
        vec![],
        vec!["bench", "--n", "0", "--d", "4"],
        vec!["bench", "--n", "many", "--d", "4"],
        vec![
            "eval",
            "--config",
            "c.json",
            "--embeddings",
            "x.npy",
            "--labels",
            "y.npy",
            "--key-labels",
            "k.npy",
        ],
        // Key labels and --keep-diagonal belong to a labelled batch.
        vec![
            "eval",
            "--config",
            "c.json",
            "--embeddings",
            "x.npy",
            "--key-embeddings",
            "k.npy",
            "--key-labels",
            "k.npy",
        ],
        vec![
            "eval",
            "--config",
            "c.json",
            "--embeddings",
            "x.npy",
            "--key-embeddings",
            "k.npy",
            "--keep-diagonal",
        ],
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stdout, "");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

// ---------------------------------------------------------------- list, check-config, help

/// The loss class names the binary should list: the same registry is linked into this test.
fn registered() -> Vec<&'static str> {
    metric_loss_registry::registered_names()
}

#[test]
fn list_as_text_and_json() {
    let fx = Fixture::new("list");
    let names = registered();
    assert!(names.contains(&"TripletLoss"));
    let (code, text, _) = fx.run(&[&"list"]);
    assert_eq!(code, 0);
    let losses_line = format!("losses (class_name): {}\n", names.join(", "));
    assert!(text.starts_with(&losses_line), "{text}");
    let text = text.replace(&losses_line, "losses (class_name): [REGISTERED]\n");
    insta::assert_snapshot!("list_text", text);

    let (code, stdout, _) = fx.run(&[&"list", &"--json"]);
    assert_eq!(code, 0);
    let mut value: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["losses"], serde_json::json!(names));
    value["losses"] = Value::from("[REGISTERED]");
    insta::assert_json_snapshot!("list_json", value);
}

#[test]
fn check_config_prints_the_normalised_config() {
    let fx = Fixture::new("check_config");
    // TF Similarity's own spelling: registered class name, a distance object, margin null.
    let config = fx.text(
        "tfsim.json",
        r#"{"class_name": "Similarity>TripletLoss", "module": "tensorflow_similarity.losses",
            "config": {"distance": {"class_name": "Similarity>EuclideanDistance", "config": {}},
                       "margin": null, "reduction": "sum"}}"#,
    );
    let (code, stdout, stderr) = fx.run(&[&"check-config", &config]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let value: Value = serde_json::from_str(&stdout).unwrap();
    insta::assert_json_snapshot!("check_config_json", value);
    // The normalised config reads back to the same config.
    let again = fx.text("again.json", &stdout);
    let (_, stdout2, _) = fx.run(&[&"check-config", &again]);
    assert_eq!(stdout, stdout2);

    let (code, toml, _) = fx.run(&[&"check-config", &config, &"--format", &"toml"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("check_config_toml", toml);
}

#[test]
fn help_has_examples() {
    let fx = Fixture::new("help");
    let mut all = String::new();
    for sub in ["", "eval", "list", "check-config", "bench"] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
        if !sub.is_empty() {
            args.push(&sub);
        }
        args.push(&"--help");
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!((code, stderr.as_str()), (0, ""));
        assert!(stdout.contains("Examples:"), "{sub}: {stdout}");
        let command = ["metric-loss", sub, "--help"].join(" ").replace("  ", " ");
        all.push_str(&format!("$ {command}\n{stdout}\n"));
    }
    insta::assert_snapshot!("help", all);
}

// ---------------------------------------------------------------- bench

#[test]
fn bench_times_a_two_view_loss_on_two_views() {
    let fx = Fixture::new("bench-views");
    for class in ["SimCLRLoss", "Barlow", "VicReg"] {
        let config = fx.text("views.json", &format!("{{\"class_name\": \"{class}\"}}"));
        let args: [&dyn AsRef<std::ffi::OsStr>; 9] = [
            &"bench",
            &"--n",
            &"16",
            &"--d",
            &"4",
            &"--reps",
            &"2",
            &"--config",
            &config,
        ];
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!((code, stderr.as_str()), (0, ""), "{class}");
        assert!(
            json(&stdout)["fwd_bwd_ms"].as_f64().unwrap() >= 0.0,
            "{class}"
        );
    }
}

#[test]
fn bench_prints_one_json_line() {
    let fx = Fixture::new("bench");
    let config = fx.text(
        "l2.toml",
        "class_name = \"TripletLoss\"\n[config]\ndistance = \"l2\"\n",
    );
    for extra in [vec![], vec!["--threads", "1"]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"bench",
            &"--n",
            &"32",
            &"--d",
            &"8",
            &"--reps",
            &"3",
            &"--warmup",
            &"1",
            &"--config",
            &config,
        ];
        args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let (code, stdout, stderr) = fx.run(&args);
        assert_eq!((code, stderr.as_str()), (0, ""));
        let value = json(&stdout);
        assert!(
            stdout.starts_with("{\"n\":32,\"d\":8,\"fwd_ms\":"),
            "{stdout}"
        );
        assert_eq!(value.as_object().unwrap().len(), 4, "{stdout}");
        assert!(stdout.contains(",\"fwd_bwd_ms\":"), "{stdout}");
        assert_eq!(
            (value["n"].as_u64(), value["d"].as_u64()),
            (Some(32), Some(8))
        );
        assert!(value["fwd_ms"].as_f64().unwrap() >= 0.0);
        assert!(value["fwd_bwd_ms"].as_f64().unwrap() >= 0.0);
    }
}

//! Builds and runs `examples/custom_loss.rs` (a loss written outside the workspace's loss
//! crates, registered, read from `examples/configs/center_loss.toml`) as part of this
//! crate's tests, so the example cannot rot.

mod common;

#[allow(dead_code)]
#[path = "../../../examples/custom_loss.rs"]
mod custom_loss;

#[test]
fn the_custom_loss_example_runs() {
    custom_loss::run(&common::examples_dir().join("center_loss.toml")).unwrap();
    assert!(metric_loss_registry::registered_names().contains(&"CenterLoss"));
}

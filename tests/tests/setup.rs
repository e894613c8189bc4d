//! Smoke checks of the setup: the shared data sets beside the checkout, and libtorch runs.

#[test]
fn shared_data_is_beside_the_checkout() {
    let dir = flan_tests::shared_data();
    assert!(
        dir.join("README.md").is_file(),
        "expected the shared data sets at {}",
        dir.display()
    );
}

#[test]
fn rms_norm_runs_on_cpu_libtorch() {
    let x = tch::Tensor::ones([2, 4], (tch::Kind::Float, tch::Device::Cpu));
    let w = tch::Tensor::full([4], 2.0, (tch::Kind::Float, tch::Device::Cpu));
    let y = flan_model::layer_norm::rms_norm(&x, &w, 0.0);
    assert_eq!(y.sum(tch::Kind::Double).double_value(&[]), 16.0);
}

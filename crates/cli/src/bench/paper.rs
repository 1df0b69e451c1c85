//! The CrypTFlow paper's figures (Kumar et al., IEEE S&P 2020) for the zoo's networks.

use serde::Serialize;

/// What the paper reports for one network.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PaperFigures {
    /// Where the figures come from.
    pub source: &'static str,
    /// The paper's setting for these figures.
    pub setting: &'static str,
    /// Seconds per inference, Porthos (3PC semi-honest).
    pub porthos_seconds: Option<f64>,
    /// Seconds per inference, SecureNN.
    pub securenn_seconds: Option<f64>,
    /// Total communication of all three parties per inference, GB.
    pub porthos_gb: Option<f64>,
    pub securenn_gb: Option<f64>,
    /// Compilation time, seconds.
    pub compile_seconds: Option<f64>,
}

const MNIST: &str = "Table V: 3PC on MNIST, LAN of 1.5 GBps, 2.7 GHz machines (the SecureNN column is [79])";
const IMAGENET: &str = "Tables IV and VIII: LAN of 377 MBps, sub-ms latency, one 4-core 3.7 GHz machine per party";

const NONE: PaperFigures = PaperFigures {
    source: "",
    setting: "",
    porthos_seconds: None,
    securenn_seconds: None,
    porthos_gb: None,
    securenn_gb: None,
    compile_seconds: None,
};

pub fn figures(network: &str) -> Option<PaperFigures> {
    let mnist = |porthos_ms: f64, securenn_ms: Option<f64>| PaperFigures {
        source: "Table V",
        setting: MNIST,
        porthos_seconds: Some(porthos_ms / 1000.0),
        securenn_seconds: securenn_ms.map(|ms| ms / 1000.0),
        ..NONE
    };
    Some(match network {
        "logistic-regression" => mnist(2.7, None),
        "secureml" => mnist(8.0, Some(17.0)),
        "minionn-mnist" => mnist(34.0, Some(47.0)),
        "lenet" => mnist(58.0, Some(79.0)),
        "resnet50" => PaperFigures {
            source: "Tables IV, VIII; compile time Section VI",
            setting: IMAGENET,
            porthos_seconds: Some(25.87),
            securenn_seconds: Some(38.36),
            porthos_gb: Some(6.87),
            securenn_gb: Some(8.54),
            compile_seconds: Some(5.0),
        },
        "densenet121" => PaperFigures {
            source: "Tables IV, VIII; compile time Section VI",
            setting: IMAGENET,
            porthos_seconds: Some(36.00),
            securenn_seconds: Some(53.99),
            porthos_gb: Some(10.54),
            securenn_gb: Some(13.53),
            compile_seconds: Some(35.0),
        },
        // The 3D-UNet of the medical case study (Section 5.2 of the secure-inference paper on
        // medical segmentation): 1 h 57 min and 557 GB; compilation "2 minutes".
        "unet3d-innereye" => PaperFigures {
            source: "medical case study (CrypTFlow, Section 5.2): InnerEye 3D-UNet, 64x256x256 CT",
            setting: "32 cores at 2.4 GHz and 128 GB per party, 625 Mbps, ping latency 0.2 s (bench: --bandwidth 78.125 --latency 200)",
            porthos_seconds: Some(117.0 * 60.0),
            porthos_gb: Some(557.0),
            compile_seconds: Some(120.0),
            ..NONE
        },
        "resnet200" => PaperFigures { source: "Section VI (compile time)", setting: IMAGENET, compile_seconds: Some(120.0), ..NONE },
        _ => return None,
    })
}

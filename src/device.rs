//! Where a command runs: the one device choice every command and back end takes.

/// The device a user asks for (`--device`). libtorch resolves it with
/// `backend::torch::resolve_device`, ONNX Runtime picks its execution provider from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA if it works here, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(format!("unknown device `{s}` (use auto, cpu or cuda)")),
        }
    }
}

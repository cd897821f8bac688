//! `gpuconv stream`: video frames from standard input to standard output; the frame handling is
//! the library's (`gpuconv::pipeline::frames`).

use anyhow::{Result, bail};
use gpuconv::pipeline::frames::{FrameOptions, filter_frames};

use crate::args::{PartialArg, StreamArgs};
use crate::usage;

pub fn run(args: &StreamArgs) -> Result<()> {
    let operation = crate::filter::build_operation(&args.operation, false)?;
    if operation.output_count() != 1 {
        bail!(usage(
            "each frame becomes one image: give one kernel, or --edge or --threshold"
        ));
    }
    // Frames keep coming: the engine stays open. Without --size the frames are Y4M, whose
    // header is read later; a 1080p frame stands for them.
    let (width, height) = args.size.unwrap_or((1920, 1080));
    let pixels = u64::from(width) * u64::from(height);
    let workload = gpuconv::Workload::new(&operation, pixels, None);
    let mut engine = crate::open_engine(args.backend.into(), &workload)?;
    let options = FrameOptions {
        size: args.size,
        drop_partial: args.partial == PartialArg::Drop,
        max_memory: args
            .max_memory
            .unwrap_or_else(gpuconv::io::default_memory_budget),
    };
    // Rust's standard output swallows writes to a closed descriptor: the frames would vanish
    // and the run end 0.
    if !crate::standard_output_is_open() {
        bail!("standard output is closed: there is nowhere to write the frames");
    }
    let result = filter_frames(
        &mut engine,
        std::io::stdin(),
        std::io::stdout(),
        &operation,
        &options,
    );
    crate::save_pipeline_cache(&engine);
    match result {
        // The reader downstream stopped (`| head`): nothing to say, as other tools say nothing.
        Err(gpuconv::Error::FrameIo { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Err(crate::Reported.into())
        }
        result => result.map(drop).map_err(Into::into),
    }
}

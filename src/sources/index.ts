export { SourceManager, type SourceChecks } from './manager.js';
export { PulledSource, SOURCE_FRAME_OUTCOMES, type SourceContext, type SourceSettings, type SourceState, type SourceStatus } from './source.js';
export { FolderSource, DONE_DIR, FAILED_DIR, PROCESSING_DIR } from './folder.js';
export { SnapshotSource } from './snapshot.js';
export { MjpegSource, MultipartSplitter, mjpegBoundary } from './mjpeg.js';
export { FfmpegSource, JpegSplitter, ffmpegArgs } from './ffmpeg.js';
export { parseSources, redactCredentials, sourceSpec, SOURCE_KINDS, type SourceInput, type SourceKind, type SourceSpec } from './spec.js';

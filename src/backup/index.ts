export { createBackup, type BackupOptions, type BackupSummary } from './create-backup.js';
export { restoreBackup, RestoreRefused, type RestoreOptions, type RestoreSummary } from './restore-backup.js';
export { ManifestError, BACKUP_FORMAT, BACKUP_FORMAT_VERSION, type BackupManifest } from './manifest.js';

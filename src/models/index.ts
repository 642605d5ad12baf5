export { ModelControl, type ModelControlMode, type ModelControlOptions, type TrafficPatch } from './control.js';
export { ModelControlStore, type ModelControlState } from './control-store.js';

import type { Ajv, AsyncValidateFunction, ErrorObject, ValidateFunction } from 'ajv';

type AnyValidateFunction = ValidateFunction | AsyncValidateFunction;
type Slot = [holder: Record<string, unknown>, key: string, text: string, path: string];
interface Ctx {
  instancePath?: string;
  parentData?: Record<string, unknown>;
  parentDataProperty?: string;
}

/** What Ajv may coerce into a number: a plain decimal numeral (no hex, binary, octal, spaces or Infinity). */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Ajv plugin (Fastify's `ajv.plugins`): every validator this Ajv compiles also refuses
 * a non-finite number, and a string it coerced into a number unless that string is a
 * decimal numeral, whatever the route, the request part (query, headers, params, body)
 * or the schema.
 *
 * Why: with `coerceTypes`, Ajv 8 turns the strings "Infinity", "-Infinity", "1e999" and
 * "-1e999" into ±Infinity without the isFinite check that `strictNumbers` applies to values
 * that already are numbers; `minimum`/`maximum` are then skipped, because their guard treats
 * a non-finite value as "not a number" (ajv-validator/ajv#2212, fastify/fastify#6718;
 * unfixed in ajv 8.20). So `?max_det=1e999` passed `{ type: 'integer', maximum: 1000 }`.
 * The same coercion (`+text`) also reads "0x10" as 16 and " 5 " as 5. Checking the
 * validated data here, once for the whole server, means no route can forget it.
 */
export function finiteNumbers(ajv: Ajv): Ajv {
  const wrapped = new WeakMap<AnyValidateFunction, AnyValidateFunction>();
  const guarded = <F extends AnyValidateFunction | undefined>(validate: F): F => {
    if (validate === undefined) return validate;
    let guard = wrapped.get(validate);
    if (guard === undefined) {
      guard = guardValidator(validate);
      wrapped.set(validate, guard);
    }
    return guard as F;
  };
  const compile = ajv.compile.bind(ajv);
  const getSchema = ajv.getSchema.bind(ajv);
  // Fastify builds its validators with compile(), or getSchema() for a schema with an $id.
  ajv.compile = ((schema: unknown, meta?: boolean) => guarded(compile(schema as never, meta))) as Ajv['compile'];
  ajv.getSchema = ((ref: string) => guarded(getSchema(ref))) as Ajv['getSchema'];
  return ajv;
}

function guardValidator(validate: AnyValidateFunction): AnyValidateFunction {
  const guard = function (this: unknown, data: unknown, ctx?: Ctx) {
    // Ajv coerces in place and forgets the text it coerced: keep it to judge afterwards.
    const slots = stringSlots(data, ctx);
    const valid = (validate as ValidateFunction).call(this, data, ctx as never) as boolean | Promise<unknown>;
    if (valid instanceof Promise) {
      return valid.then((result) => {
        const error = numberError(data, slots, ctx);
        if (error) throw Object.assign(new Error(`${error.instancePath} ${error.message}`), { errors: [error], validation: [error] });
        return result;
      });
    }
    if (!valid) {
      guard.errors = validate.errors;
      return false;
    }
    const error = numberError(data, slots, ctx);
    guard.errors = error ? [error] : null;
    return error === undefined;
  } as AnyValidateFunction;
  // Fastify passes parentData (so that Ajv may replace a coerced root value) only to a function with schemaEnv.
  guard.schema = validate.schema;
  guard.schemaEnv = validate.schemaEnv;
  if (validate.source) guard.source = validate.source;
  return guard;
}

function numberError(data: unknown, slots: Slot[], ctx?: Ctx): ErrorObject | undefined {
  const fail = (path: string, message: string): ErrorObject => ({
    instancePath: (ctx?.instancePath ?? '') + path,
    schemaPath: '#',
    keyword: 'finite',
    params: {},
    message,
  });
  for (const [holder, key, text, path] of slots) {
    const value = holder[key];
    if (typeof value !== 'number') continue;
    if (!Number.isFinite(value)) return fail(path, 'must be a finite number');
    if (!DECIMAL.test(text)) return fail(path, 'must be a decimal number');
  }
  const root = ctx?.parentData && ctx.parentDataProperty !== undefined ? ctx.parentData[ctx.parentDataProperty] : data;
  const path = nonFinitePath(root);
  return path === undefined ? undefined : fail(path, 'must be a finite number');
}

/** Every string in `data` with where it sits, so that a coercion of it can be seen afterwards. */
function stringSlots(data: unknown, ctx?: Ctx): Slot[] {
  const slots: Slot[] = [];
  if (typeof data === 'string' && ctx?.parentData && ctx.parentDataProperty !== undefined) slots.push([ctx.parentData, ctx.parentDataProperty, data, '']);
  walk(data, (holder, key, value, path) => {
    if (typeof value === 'string') slots.push([holder, key, value, path]);
    return false;
  });
  return slots;
}

/** JSON pointer to the first number in `data` that is NaN or ±Infinity; undefined when none. */
export function nonFinitePath(data: unknown): string | undefined {
  if (typeof data === 'number') return Number.isFinite(data) ? undefined : '';
  let found: string | undefined;
  walk(data, (_holder, _key, value, path) => {
    if (typeof value === 'number' && !Number.isFinite(value)) found = path;
    return found !== undefined;
  });
  return found;
}

/** Visits every property and item below `data` in document order until `visit` returns true. */
function walk(data: unknown, visit: (holder: Record<string, unknown>, key: string, value: unknown, path: string) => boolean): void {
  // An explicit stack: a JSON body may nest deeper than the call stack allows.
  const stack: Array<[unknown, string]> = [[data, '']];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    // Buffers (raw image bodies) hold bytes, not client numbers; everything else parsed from a request is walked.
    if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) continue;
    const holder = value as Record<string, unknown>;
    const keys = Object.keys(holder);
    const children: Array<[unknown, string]> = [];
    for (const key of keys) {
      const childPath = `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (visit(holder, key, holder[key], childPath)) return;
      children.push([holder[key], childPath]);
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
  }
}

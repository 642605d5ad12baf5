/**
 * The error body of src/protocol/errors.ts as JSON Schema, for the routes'
 * documented answers (the OpenAPI document). One schema for every route,
 * the stream's HTTP answers included.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { ErrorResponse } from './errors.js';

export const ErrorResponseSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable error code (docs/errors.md)', examples: ['INVALID_REQUEST'] }),
      message: Type.String({ description: 'What went wrong, for people' }),
    }),
  },
  { description: 'An error' },
);

/** The error body with a description of when a route gives it (the codes), for a route's `response` map. */
export function errorResponse(description: string) {
  return Type.Object(ErrorResponseSchema.properties, { description });
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** Compile-time: the schema describes the protocol's type. */
export type ErrorSchemaMatchesProtocol = Assert<Same<Static<typeof ErrorResponseSchema>, ErrorResponse>>;

import { z } from 'zod';
import {
  ApiErrorSchema,
  BatchAcceptedSchema,
  BatchStatusSchema,
  BatchSubmissionSchema,
  JobAcceptedSchema,
  JobSubmissionSchema,
  VerdictPageSchema,
} from './api';
import { StageJobSchema } from './job';
import { VerdictSchema } from './verdict';

/** JSON Schemas for the OpenAPI document, derived from the zod contracts so the two never drift. */
export function openApiComponentSchemas(): Record<string, Record<string, unknown>> {
  const named: Record<string, z.ZodType> = {
    JobSubmission: JobSubmissionSchema,
    BatchSubmission: BatchSubmissionSchema,
    JobAccepted: JobAcceptedSchema,
    BatchAccepted: BatchAcceptedSchema,
    BatchStatus: BatchStatusSchema,
    Verdict: VerdictSchema,
    VerdictPage: VerdictPageSchema,
    ApiError: ApiErrorSchema,
    StageJob: StageJobSchema,
  };
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, schema] of Object.entries(named)) {
    const json = z.toJSONSchema(schema, { target: 'openapi-3.0', unrepresentable: 'any' }) as Record<string, unknown>;
    delete json.$schema;
    out[name] = json;
  }
  return out;
}

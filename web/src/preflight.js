// Preflight: turns the C planner's answer (lbw_plan = lb_plan_from_gguf) into a session configuration, or an actionable refusal.

import { mib } from './profiles.js';

export class PreflightError extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'PreflightError';
    this.code = 'PREFLIGHT';
    this.details = details;
  }
}

const KV_BITS = { f16: 16, q8: 8, q4: 4, q3: 3, q2: 2 };

/**
 * plan: the JSON of lbw_plan, made with min_ctx = max_ctx = the wanted context.
 * o: { budget, budgetWhy, contextLength (wanted), minContext (the least acceptable), kvType ('auto' or a type for both K and V) }
 * Returns { kvK, kvV, nCtx, budget, totalBytes, fileBytes, reason, alternatives } or throws PreflightError.
 */
export function decide(plan, o) {
  const want = o.contextLength;
  const least = Math.min(o.minContext, want);
  const base = {
    budget: o.budget, budgetWhy: o.budgetWhy, fileBytes: plan.file_bytes, fixedBytes: plan.fixed_bytes,
    nCtxTrain: plan.n_ctx_train, wantedContext: want, minContext: least,
  };
  if (plan.fixed_bytes > o.budget) {
    throw new PreflightError(
      `this model does not fit: it needs ${mib(plan.fixed_bytes)} before any context (weights ${mib(plan.file_bytes)}), ` +
      `but the memory budget is ${mib(o.budget)} (${o.budgetWhy}). Use a smaller quantization of the model ` +
      `(a file under ${mib(Math.max(0, o.budget - (plan.fixed_bytes - plan.file_bytes)) * 0.9)}), or pass a larger memoryBudget if this device really has the memory.`,
      { ...base, needBytes: plan.fixed_bytes });
  }
  const ok = plan.pairs.filter((p) => p.supported && p.n_ctx > 0);
  let pick;
  if (o.kvType && o.kvType !== 'auto') {
    pick = plan.pairs.find((p) => p.kv_k === o.kvType && p.kv_v === o.kvType);
    if (!pick || !pick.supported) throw new PreflightError(`KV type '${o.kvType}' is not supported by this model`, base);
  } else {
    pick = plan.recommended >= 0 ? plan.pairs[plan.recommended] : null;
  }
  if (!pick || pick.n_ctx < least) {
    const best = ok.reduce((a, p) => (!a || p.n_ctx > a.n_ctx ? p : a), null);
    throw new PreflightError(
      `this model fits only ${best ? best.n_ctx : 0} tokens of context in the memory budget of ${mib(o.budget)} ` +
      `(${o.budgetWhy})${best ? ` even with ${best.kv_k}/${best.kv_v} KV` : ''}; at least ${least} are required. ` +
      `Lower minContext, use a smaller model, or pass a larger memoryBudget.`,
      { ...base, bestPair: best });
  }
  const f16 = plan.pairs[0];
  let reason;
  if (pick === f16 && pick.n_ctx >= want) reason = `f16 KV cache with ${pick.n_ctx} tokens of context: ${mib(pick.total_bytes)} of the ${mib(o.budget)} budget`;
  else if (pick.n_ctx >= want) {
    reason = `f16 KV would reach only ${f16.n_ctx} of the ${want} tokens wanted in ${mib(o.budget)}; ` +
      `chose ${pick.kv_k}/${pick.kv_v} KV (${KV_BITS[pick.kv_k]}/${KV_BITS[pick.kv_v]} bits), which reaches ${pick.n_ctx} tokens in ${mib(pick.total_bytes)}`;
  } else {
    reason = `no KV type reaches the ${want} tokens wanted in ${mib(o.budget)}; ${pick.kv_k}/${pick.kv_v} KV gives the longest context, ${pick.n_ctx} tokens (${mib(pick.total_bytes)})`;
  }
  if (o.kvType && o.kvType !== 'auto') reason = `KV type ${o.kvType} requested by the caller: ${pick.n_ctx} tokens in ${mib(pick.total_bytes)}`;
  return {
    ...base, kvK: pick.kv_k, kvV: pick.kv_v, nCtx: Math.min(pick.n_ctx, want), totalBytes: pick.total_bytes, reason,
    alternatives: ok.map((p) => ({ kv: `${p.kv_k}/${p.kv_v}`, nCtx: p.n_ctx, totalBytes: p.total_bytes })),
  };
}

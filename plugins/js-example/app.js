// A comfyui-mcp workflow pack written in JavaScript: one text-to-image template.
//
// The pack is the object `templates` below, the export `comfyui:workflow/templates` of the WIT
// world `workflow-pack` (`wit/workflow.wit`). componentize-qjs (QuickJS) turns this file into a
// WebAssembly component (`build.sh`); the host runs every call in a fresh sandbox with no files,
// no network and fixed clocks, so:
//
// - `build` is a pure function of its parameters and of `models()`: equal inputs give
//   byte-identical graphs;
// - WIT conventions: variants are `{ tag, val }`, enums are strings, record fields camelCase, an
//   absent `option` is `undefined`; `s64` values travel as plain Numbers (exact up to 2^53);
// - errors reach users as a thrown `{ tag, val }` build error; anything else thrown is turned
//   into `{ tag: 'failed' }` with its message, so users never see a bare trap.
//
// comfyui-mcp's example packs (plugins/*-example) build this same template in Python, JavaScript
// and Rust: same parameters, same graph for the same inputs.

import { log, models } from 'comfyui:workflow/host@1.0.0';

const PACK_NAME = 'js-example';
const TEMPLATE_ID = 'js-txt2img';
const VERSION = '0.1.0';
const CHECKPOINTS = 'checkpoints';
const MAX_SEED = 2 ** 53 - 1;

// One parameter declaration; the host enforces kind, range and multiple before `build`.
function spec(name, kind, description, { value, minimum, maximum, multipleOf, required = false } = {}) {
  return {
    name,
    kind,
    description,
    required,
    default: value === undefined ? undefined : { tag: kind, val: value },
    minimum,
    maximum,
    multipleOf,
    choices: [],
    aliases: [],
  };
}

const PARAMS = [
  spec('prompt', 'text', 'What to draw.', { required: true }),
  spec('negative_prompt', 'text', 'What to avoid.', { value: 'blurry, low quality' }),
  spec('width', 'integer', 'Image width in pixels.', { value: 512, minimum: 64, maximum: 2048, multipleOf: 8 }),
  spec('height', 'integer', 'Image height in pixels.', { value: 512, minimum: 64, maximum: 2048, multipleOf: 8 }),
  spec('steps', 'integer', 'Sampling steps.', { value: 20, minimum: 1, maximum: 150 }),
  spec('cfg_scale', 'number', 'How closely to follow the prompt.', { value: 7.0, minimum: 1, maximum: 30 }),
  spec('seed', 'integer', 'Random seed for reproducible results; -1 = random.', { value: -1, minimum: -1, maximum: MAX_SEED }),
  spec('checkpoint', 'text', 'Checkpoint file; default: the first one ComfyUI has.'),
];

const TEMPLATE = {
  id: TEMPLATE_ID,
  name: 'Text to image (JavaScript)',
  description: 'Plain SD1.5 text-to-image with core ComfyUI nodes, from a pack written in JavaScript.',
  category: 'examples',
  tags: ['txt2img', 'javascript'],
  defaultWidth: 512,
  defaultHeight: 512,
  params: PARAMS,
};

function invalid(param, message) {
  return { tag: 'invalid-params', val: [{ param, message }] };
}

// The caller's checkpoint if ComfyUI has it (or lists none), else the first installed one.
function chooseCheckpoint(requested, installed) {
  if (requested !== undefined) {
    if (installed.length === 0 || installed.includes(requested)) return requested;
    throw invalid('checkpoint', `checkpoint \`${requested}\` is not installed in ComfyUI; installed: ${installed.join(', ')}`);
  }
  if (installed.length === 0) {
    throw { tag: 'failed', val: 'no checkpoint installed in ComfyUI (models/checkpoints is empty); install one or pass `checkpoint`' };
  }
  return installed[0];
}

// The ComfyUI API-format graph for the settings `p` (an object of the parameters).
function graph(p, checkpoint) {
  return {
    1: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: checkpoint } },
    2: { class_type: 'CLIPTextEncode', inputs: { text: p.prompt, clip: ['1', 1] } },
    3: { class_type: 'CLIPTextEncode', inputs: { text: p.negative_prompt, clip: ['1', 1] } },
    4: { class_type: 'EmptyLatentImage', inputs: { width: p.width, height: p.height, batch_size: 1 } },
    5: {
      class_type: 'KSampler',
      inputs: {
        model: ['1', 0],
        seed: p.seed,
        steps: p.steps,
        cfg: p.cfg_scale,
        sampler_name: 'euler',
        scheduler: 'normal',
        positive: ['2', 0],
        negative: ['3', 0],
        latent_image: ['4', 0],
        denoise: 1.0,
      },
    },
    6: { class_type: 'VAEDecode', inputs: { samples: ['5', 0], vae: ['1', 2] } },
    7: { class_type: 'SaveImage', inputs: { images: ['6', 0], filename_prefix: `comfyui-mcp/${TEMPLATE_ID}` } },
  };
}

// Checks what the host cannot (a blank prompt), picks the checkpoint, returns the JSON text.
function buildGraph(params) {
  // Integers may arrive as BigInt on other JS engines; Number is exact up to 2^53.
  const p = Object.fromEntries(params.map(({ name, value }) => [name, typeof value.val === 'bigint' ? Number(value.val) : value.val]));
  if (p.prompt.trim() === '') throw invalid('prompt', 'the prompt is blank; describe what to draw');
  const checkpoint = chooseCheckpoint(p.checkpoint, models(CHECKPOINTS));
  log('debug', `building ${TEMPLATE_ID}: ${p.width}x${p.height} steps=${p.steps} seed=${p.seed} checkpoint=${checkpoint}`);
  return JSON.stringify(graph(p, checkpoint));
}

function isBuildError(e) {
  return e !== null && typeof e === 'object' && ['unknown-template', 'invalid-params', 'failed'].includes(e.tag);
}

export const templates = {
  info() {
    return { name: PACK_NAME, version: VERSION, description: 'An example pack written in JavaScript: one text-to-image template.' };
  },

  list() {
    return [TEMPLATE];
  },

  build(id, params) {
    if (id !== TEMPLATE_ID) throw { tag: 'unknown-template', val: id };
    try {
      return buildGraph(params);
    } catch (e) {
      if (isBuildError(e)) throw e;
      // A bug in the pack: tell the user what it was.
      throw { tag: 'failed', val: `${e && e.name ? e.name : 'Error'}: ${e && e.message !== undefined ? e.message : String(e)}` };
    }
  },
};

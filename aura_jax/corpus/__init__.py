"""A miniature of the paper's data and backbones, made by the project itself:

- `make.make_corpus`: synthesized speech corpus (espeak-ng voices, some held out), CommonVoice
  ASR sets, text QA JSONL, an SD-QA-layout spoken QA test set and LM text, from the bundled
  grammar and fact table (`grammar`);
- `pretrain_lm.pretrain_lm`: a tiny Qwen2 that knows the corpus language and facts;
- `pretrain_whisper.pretrain_whisper`: a tiny Whisper ASR model (the teacher / cascade ASR).
"""

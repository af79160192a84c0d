/* quiz.js -- the quiz. */
import { $, clear, el } from './util.js';

/* ---------------------------------------------------------------- quiz */
export const QUIZ = [
  { q: 'The attention weights of one query over the tokens it sees add up to…', a: ['1', '0', 'the number of tokens', 'it depends on the temperature'], ok: 0,
    why: 'Softmax makes them positive and normalises them to sum to 1 (check any row of the matrix).' },
  { q: 'Why is q·k divided by √d before the softmax?', a: ['so the softmax does not saturate into a one-hot as d grows', 'so the weights sum to 1', 'to hide future tokens', 'to make it faster'], ok: 0,
    why: 'Dot products of d-dimensional vectors grow like √d; unscaled, softmax turns nearly one-hot and its gradients vanish. Try “drop the 1/√d scale”.' },
  { q: 'In a GPT-style (causal) model, token 5 can attend to…', a: ['tokens 1 to 5', 'every token in the text', 'only token 4', 'only the tokens after it'], ok: 0,
    why: 'The causal mask sets the scores of future tokens to −∞, so each token sees itself and the past.' },
  { q: 'Turning the focus dial (attention temperature) down toward 0 makes the weights…', a: ['sharper, toward one-hot', 'more uniform', 'sum to more than 1', 'unchanged'], ok: 0,
    why: 'Dividing the scores by a small T magnifies their differences; a large T flattens them toward uniform.' },
  { q: 'What does one head output for a query?', a: ['a weighted blend of the value vectors', 'the key with the highest score', 'the query vector, unchanged', 'a probability for each word in the vocabulary'], ok: 0,
    why: 'Weights times values, summed: “score, soften into weights, blend”.' },
  { q: '“The keys to the cabinet ___”: which word decides between “were” and “was”?', a: ['keys', 'cabinet', 'the', 'to'], ok: 0,
    why: 'The verb agrees with the subject, “keys”, several words back: that is what attention lets a model reach.' },
  { q: 'Why does a model run several heads in each layer?', a: ['each can look for a different relation at the same time', 'to average away noise in one head', 'because one head cannot see the whole sentence', 'to store more tokens'], ok: 0,
    why: 'Different heads learn different patterns (previous token, subject–verb, …), all computed in parallel.' },
  { q: 'Many heads put most of their weight on the first token, whatever it is. What is that usually?', a: ['an “attention sink”: a place to park weight when nothing else is relevant', 'proof that the first word is the most important', 'a bug in the softmax', 'the causal mask at work'], ok: 0,
    why: 'Weights must sum to 1, so a head with nothing to look for dumps them on a token it can always see. Try “ignore first token & renormalize”.' },
  { q: 'The “average of heads” panel looks spread out while each head is sharp. Why?', a: ['the heads look at different tokens, and averaging blurs them', 'averaging raises the temperature', 'the average includes masked tokens', 'the heads are computed one after another'], ok: 0,
    why: 'An average of different sharp patterns is flat: this is why the lens shows each head next to the average.' },
];
export function renderQuiz() {
  const f = clear($('quiz-form'));
  QUIZ.forEach((item, k) => {
    // a fixed shuffle so the right answer is not always first
    const order = item.a.map((_, i) => i).sort((x, y) => ((x * 7 + k * 3) % 5) - ((y * 7 + k * 3) % 5));
    const fs = el('fieldset'); fs.append(el('legend', {}, `${k + 1}. ${item.q}`));
    for (const i of order) {
      const lab = el('label');
      lab.append(el('input', { type: 'radio', name: `quiz-${k}`, value: String(i) }), ' ' + item.a[i]);
      fs.append(lab);
    }
    fs.append(el('div', { class: 'why', id: `why-${k}` }));
    f.append(fs);
  });
}
export function checkQuiz() {
  let score = 0;
  QUIZ.forEach((item, k) => {
    const c = document.querySelector(`input[name=quiz-${k}]:checked`), why = $(`why-${k}`);
    const ok = c && Number(c.value) === item.ok;
    if (ok) score++;
    why.className = 'why ' + (ok ? 'good' : 'bad');
    why.textContent = (ok ? '✓ ' : c ? '✗ ' : '– not answered. ') + (ok ? '' : `Answer: ${item.a[item.ok]}. `) + item.why;
  });
  $('quiz-score').textContent = `Score: ${score} / ${QUIZ.length}`;
  $('quiz-score').setAttribute('data-score', String(score));
}

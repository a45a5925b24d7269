// The choices of a <select> kept equal to a list, keeping the first (empty) option.

/** Makes `select` offer `choices` ([value, label] pairs) after its first option, in order. */
export function setOptions(select, choices) {
  const [all, ...current] = [...select.options];
  const byValue = new Map(current.map((option) => [option.value, option]));
  const wanted = choices.map(([value, label]) => {
    const option = byValue.get(value) || new Option(label, value);
    option.textContent = label;
    return option;
  });
  const kept = new Set(wanted);
  for (const option of current) if (!kept.has(option)) option.remove();
  let previous = all;
  for (const option of wanted) {
    if (previous.nextElementSibling !== option) previous.after(option);
    previous = option;
  }
}

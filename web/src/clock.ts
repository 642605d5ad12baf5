import { ref } from 'vue';

/** The time, updated every second while the page is open: for ticking ages ("last frame 12 s ago"). */
export const now = ref(Date.now());
setInterval(() => {
  now.value = Date.now();
}, 1000);

import { createRouter, createWebHashHistory, type RouteRecordRaw } from 'vue-router';
import LinesPage from './pages/LinesPage.vue';

/**
 * Hash history (`/#/review?line=…`): the server serves one index.html at `/` and
 * needs no fallback route. Lines is loaded with the app; every other page is a
 * chunk of its own, fetched when first opened.
 */
export const PAGES = ['lines', 'review', 'system', 'connections', 'jobs', 'models', 'alerts'] as const;
export type PageName = (typeof PAGES)[number];

const routes: RouteRecordRaw[] = [
  { path: '/', redirect: '/lines' },
  { path: '/lines', name: 'lines', component: LinesPage },
  { path: '/review', name: 'review', component: () => import('./pages/ReviewPage.vue') },
  { path: '/system', name: 'system', component: () => import('./pages/SystemPage.vue') },
  { path: '/connections', name: 'connections', component: () => import('./pages/ConnectionsPage.vue') },
  { path: '/jobs', name: 'jobs', component: () => import('./pages/JobsPage.vue') },
  { path: '/models', name: 'models', component: () => import('./pages/ModelsPage.vue') },
  { path: '/alerts', name: 'alerts', component: () => import('./pages/AlertsPage.vue') },
  { path: '/:rest(.*)*', redirect: '/lines' },
];

export const router = createRouter({ history: createWebHashHistory(), routes });

// Public surface of the plan domain: list exports by name.
export { planServices, type PlanSelection, type ServicePlan } from './plan-services.js';

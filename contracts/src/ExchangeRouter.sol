// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IExchangeLeg, IRelayerRegistry, Leg} from "./SignedOperations.sol";

/// @title Atomic exchanges: burn the cost and mint the reward in one transaction, or neither.
/// @notice Each exchange runs its two legs (`executeLeg` on the cost token, then on the reward token)
/// inside one self-call with a fixed gas budget: a failing leg reverts that call alone, undoing the
/// other leg and leaving both refs unconsumed, while the batch's other exchanges go through. Every
/// exchange ends in `ExchangeExecuted` or `ExchangeFailed`. The factory deploys the router with the
/// token implementations, which accept legs from it only. See docs/adr/0002-atomic-exchange.md.
contract ExchangeRouter {
    struct Exchange {
        bytes32 id; // signed into both legs: neither runs in any other exchange
        address costToken;
        Leg cost;
        address rewardToken;
        Leg reward;
    }

    /// @notice Gas each exchange gets: two signature checks (an ERC-1271 signer gets 100,000 each), a
    /// delivery to a receiving contract (200,000) and the movements. It is guaranteed: a transaction whose
    /// gas limit could not forward it reverts instead of failing the exchange.
    uint256 public constant EXCHANGE_GAS = 600_000;

    IRelayerRegistry private immutable _registry;

    event ExchangeExecuted(bytes32 indexed id);
    /// @notice `reason` is the revert data: usually a token's `LegFailed(ref, failure)`.
    event ExchangeFailed(bytes32 indexed id, bytes reason);

    error NotRelayer(address caller);
    error OnlySelf();
    error InsufficientGas();

    constructor() {
        _registry = IRelayerRegistry(msg.sender);
    }

    /// @notice Executes each exchange all or nothing; a failed one is reported and skipped.
    function execute(Exchange[] calldata exchanges) external {
        if (!_registry.isRelayer(msg.sender)) revert NotRelayer(msg.sender);
        for (uint256 i; i < exchanges.length; ++i) {
            Exchange calldata exchange = exchanges[i];
            try this.settle{gas: EXCHANGE_GAS}(exchange) {
                emit ExchangeExecuted(exchange.id);
            } catch (bytes memory reason) {
                // As the tokens do for receivers: a low gas limit never passes for the exchange's own failure.
                if (gasleft() < EXCHANGE_GAS / 63) revert InsufficientGas();
                emit ExchangeFailed(exchange.id, reason);
            }
        }
    }

    /// @dev Both legs, in one frame that reverts as a whole; callable by this contract only.
    function settle(Exchange calldata exchange) external {
        if (msg.sender != address(this)) revert OnlySelf();
        IExchangeLeg(exchange.costToken).executeLeg(exchange.id, exchange.cost);
        IExchangeLeg(exchange.rewardToken).executeLeg(exchange.id, exchange.reward);
    }
}

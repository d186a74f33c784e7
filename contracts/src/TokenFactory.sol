// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {CreditToken} from "./CreditToken.sol";
import {RewardsToken} from "./RewardsToken.sol";

/// @title Creates a tenant's token contracts as EIP-1167 clones of implementations it deploys
/// (and locks) itself. Tenant onboarding is one `multicall` of `createRewards` and `createCredit`.
contract TokenFactory is Multicall {
    enum ContractKind {
        Credit,
        Rewards
    }

    CreditToken public immutable creditImplementation;
    RewardsToken public immutable rewardsImplementation;

    /// @notice The indexer discovers tenant contracts from this event.
    event TenantContractCreated(bytes32 indexed tenantKey, ContractKind indexed kind, address contractAddress);

    constructor() {
        address[] memory none = new address[](0);
        creditImplementation = new CreditToken();
        creditImplementation.initialize("", "", 0, 0, address(0), none);
        rewardsImplementation = new RewardsToken();
        rewardsImplementation.initialize("", address(0), none);
    }

    function createCredit(
        bytes32 tenantKey,
        string calldata name,
        string calldata symbol,
        uint8 decimals,
        uint248 maxSupply,
        address admin,
        address[] calldata minters
    ) external returns (address token) {
        token = Clones.clone(address(creditImplementation));
        CreditToken(token).initialize(name, symbol, decimals, maxSupply, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Credit, token);
    }

    function createRewards(bytes32 tenantKey, string calldata uri, address admin, address[] calldata minters)
        external
        returns (address token)
    {
        token = Clones.clone(address(rewardsImplementation));
        RewardsToken(token).initialize(uri, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Rewards, token);
    }
}
